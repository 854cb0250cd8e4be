//! gitlab-runner's `connection_max_age`: connections to GitLab are not kept for longer than this, so a long-lived
//! runner picks up rotated certificates and a load balancer can move it to another node. Upstream closes its idle
//! connections once the age has passed since the last time it did; here the reqwest client, whose pool holds the
//! connections, is replaced by a fresh one at that point. Requests in flight keep the client they started with,
//! and its connections close when the last of them ends.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::ApiError;

type Make = Arc<dyn Fn() -> Result<reqwest::Client, ApiError> + Send + Sync>;

/// A reqwest client that is rebuilt (with a new, empty pool) when asked for after its maximum age.
pub(crate) struct AgedClient {
    make: Make,
    current: Mutex<Current>,
}

struct Current {
    client: reqwest::Client,
    since: Instant,
}

impl AgedClient {
    pub(crate) fn new(make: Make) -> Result<Self, ApiError> {
        let client = make()?;
        Ok(Self {
            make,
            current: Mutex::new(Current {
                client,
                since: Instant::now(),
            }),
        })
    }

    /// The client for the next request: a fresh one when `max_age` has passed since the current one was made.
    /// Should the rebuild fail (it reads nothing from disk, so only a broken TLS setup could), the old client
    /// stays in use and the next request tries again.
    pub(crate) fn get(&self, max_age: Option<Duration>) -> reqwest::Client {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(age) = max_age
            && current.since.elapsed() > age
        {
            match (self.make)() {
                Ok(client) => {
                    tracing::debug!(
                        max_age_s = age.as_secs_f64(),
                        "closing connections to GitLab older than connection_max_age"
                    );
                    *current = Current {
                        client,
                        since: Instant::now(),
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the connections to GitLab; keeping the old ones")
                }
            }
        }
        current.client.clone()
    }
}
