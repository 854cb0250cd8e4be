//! Sessions: one per job, registered under a random id with a random token, holding at most one attached
//! terminal. The job owns its [`JobSession`]; dropping it unregisters the session and ends its terminal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use oxrunner_core::{CancellationToken, Terminal, TerminalSession};
use oxrunner_wire::SessionInfo;
use rand::RngCore;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

/// The longest closing a session waits for its terminal's shell to be gone (the shell executor's hangup and kill
/// graces, a `docker exec` hangup) before the job's cleanup goes ahead anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(20);

/// Every session of one server, by id.
#[derive(Default)]
pub(crate) struct Registry {
    sessions: Mutex<HashMap<String, Arc<SessionState>>>,
}

impl Registry {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<SessionState>>> {
        // A panic while holding the lock leaves a plain map behind: still usable.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, id: &str) -> Option<Arc<SessionState>> {
        self.map().get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    fn insert(&self, state: Arc<SessionState>) {
        self.map().insert(state.id.clone(), state);
    }

    fn remove(&self, id: &str) {
        self.map().remove(id);
    }
}

/// Why a terminal cannot be attached.
pub(crate) enum AttachError {
    /// Another client holds the terminal (gitlab-runner: 423 Locked).
    Locked,
    /// The job is ending.
    Closed,
}

#[derive(Default)]
struct Inner {
    terminal: Option<Arc<dyn Terminal>>,
    /// The attached client: its number and stop signal.
    attached: Option<(u64, CancellationToken)>,
    attachments: u64,
    closed: bool,
}

/// One session's state, shared by the job and the server's handlers.
pub(crate) struct SessionState {
    pub id: String,
    token: String,
    pub timeout: Duration,
    inner: Mutex<Inner>,
    /// Bumped on every change (terminal offered, client attached or gone, closed).
    changed: watch::Sender<u64>,
}

impl SessionState {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The `Authorization` header equals the token; the comparison takes the same time wherever they differ.
    pub fn authorized(&self, header: Option<&[u8]>) -> bool {
        header.is_some_and(|h| bool::from(h.ct_eq(self.token.as_bytes())))
    }

    pub fn is_closed(&self) -> bool {
        self.inner().closed
    }

    /// The executor's terminal; waits up to `max` for the job environment to offer it (a client may come before
    /// the job's container runs). `None` when it did not come or the job ended.
    pub async fn wait_terminal(&self, max: Duration) -> Option<Arc<dyn Terminal>> {
        let mut rx = self.changed.subscribe();
        let wait = async {
            loop {
                {
                    let inner = self.inner();
                    if inner.closed {
                        return None;
                    }
                    if let Some(t) = &inner.terminal {
                        return Some(Arc::clone(t));
                    }
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(max, wait).await.ok().flatten()
    }

    /// Makes the caller the session's one client.
    pub fn attach(self: &Arc<Self>) -> Result<Attachment, AttachError> {
        let stop = CancellationToken::new();
        let number;
        {
            let mut inner = self.inner();
            if inner.closed {
                return Err(AttachError::Closed);
            }
            if inner.attached.is_some() {
                return Err(AttachError::Locked);
            }
            inner.attachments += 1;
            number = inner.attachments;
            inner.attached = Some((number, stop.clone()));
        }
        self.bump();
        Ok(Attachment {
            state: Arc::clone(self),
            number,
            stop,
        })
    }

    fn close(&self) {
        let attached = {
            let mut inner = self.inner();
            inner.closed = true;
            inner.terminal = None;
            inner.attached.clone()
        };
        if let Some((_, stop)) = attached {
            stop.cancel();
        }
        self.bump();
    }
}

/// The attached client; dropping it detaches.
pub(crate) struct Attachment {
    state: Arc<SessionState>,
    number: u64,
    /// Cancelled when the job ends while the client is attached.
    pub stop: CancellationToken,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        {
            let mut inner = self.state.inner();
            if inner.attached.as_ref().is_some_and(|(n, _)| *n == self.number) {
                inner.attached = None;
            }
        }
        self.state.bump();
    }
}

/// One job's web terminal session.
pub struct JobSession {
    state: Arc<SessionState>,
    registry: Arc<Registry>,
    info: SessionInfo,
}

impl JobSession {
    pub(crate) fn create(
        registry: &Arc<Registry>,
        base_url: &str,
        certificate: &str,
        timeout: Duration,
    ) -> Self {
        let id = random_hex(16);
        let token = random_hex(32);
        let (changed, _) = watch::channel(0);
        let state = Arc::new(SessionState {
            id: id.clone(),
            token: token.clone(),
            timeout,
            inner: Mutex::new(Inner::default()),
            changed,
        });
        registry.insert(Arc::clone(&state));
        Self {
            state,
            registry: Arc::clone(registry),
            info: SessionInfo {
                url: format!("{base_url}/session/{id}"),
                certificate: certificate.to_owned(),
                authorization: token,
            },
        }
    }

    /// The `session` object for `jobs/request`: URL, certificate and token.
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }
}

impl std::fmt::Debug for JobSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSession").field("info", &self.info).finish()
    }
}

impl Drop for JobSession {
    fn drop(&mut self) {
        self.registry.remove(&self.state.id);
        self.state.close();
    }
}

impl TerminalSession for JobSession {
    fn offer(&self, terminal: Arc<dyn Terminal>) {
        {
            let mut inner = self.state.inner();
            if inner.closed {
                return;
            }
            inner.terminal = Some(terminal);
        }
        self.state.bump();
    }

    fn connected(&self) -> bool {
        self.state.inner().attached.is_some()
    }

    fn disconnected(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut rx = self.state.changed.subscribe();
            while self.connected() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
    }

    fn timeout(&self) -> Duration {
        self.state.timeout
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.state.close();
            // The proxy detaches only after the terminal's shell is closed; a proxy stuck anyway must not hold the
            // job's cleanup forever.
            let _ = tokio::time::timeout(CLOSE_WAIT, self.disconnected()).await;
        })
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}
