//! Fault injection: deterministic (seeded) misbehaviour to exercise a runner's retry paths.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::state::{Shared, lock};

/// The endpoint families a fault rule can target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Register,
    Verify,
    Unregister,
    UnregisterManager,
    ResetToken,
    JobRequest,
    JobUpdate,
    TraceAppend,
    ArtifactUpload,
    ArtifactDownload,
    ObjectStorage,
    Git,
    /// Every endpoint above.
    Any,
}

impl Endpoint {
    pub fn classify(method: &Method, path: &str) -> Option<Endpoint> {
        if let Some(rest) = path.strip_prefix("/api/v4/") {
            let parts: Vec<&str> = rest.split('/').collect();
            return match (method.as_str(), parts.as_slice()) {
                ("POST", ["runners"]) => Some(Endpoint::Register),
                ("DELETE", ["runners"]) => Some(Endpoint::Unregister),
                ("POST", ["runners", "verify"]) => Some(Endpoint::Verify),
                ("DELETE", ["runners", "managers"]) => Some(Endpoint::UnregisterManager),
                ("POST", ["runners", "reset_authentication_token"]) => Some(Endpoint::ResetToken),
                ("POST", ["jobs", "request"]) => Some(Endpoint::JobRequest),
                ("PUT", ["jobs", _]) => Some(Endpoint::JobUpdate),
                ("PATCH", ["jobs", _, "trace"]) => Some(Endpoint::TraceAppend),
                ("POST", ["jobs", _, "artifacts"]) => Some(Endpoint::ArtifactUpload),
                ("GET", ["jobs", _, "artifacts"]) => Some(Endpoint::ArtifactDownload),
                _ => None,
            };
        }
        if path.starts_with("/object-storage/") {
            return Some(Endpoint::ObjectStorage);
        }
        if path.contains(".git/") {
            return Some(Endpoint::Git);
        }
        None
    }

    fn matches(self, other: Endpoint) -> bool {
        self == Endpoint::Any || self == other
    }
}

/// "The next `count` requests to `endpoint` answer `status`."
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailRule {
    pub endpoint: Endpoint,
    pub count: u32,
    pub status: u16,
}

/// The whole fault configuration (also the admin API's JSON body).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultConfig {
    pub seed: Option<u64>,
    /// Probability (0..1) that a trace PATCH answers 500 without storing anything.
    pub trace_5xx_probability: f64,
    /// Probability (0..1) that a trace PATCH answers 416 with the current `Range`, storing nothing.
    pub trace_416_probability: f64,
    /// Probability (0..1) that a Runner API request is dropped mid-response.
    pub drop_connection_probability: f64,
    /// Fixed delay before every Runner API request is handled.
    pub delay_ms: u64,
    pub fail_next: Vec<FailRule>,
    /// `Retry-After` seconds sent with injected 429/5xx answers.
    pub retry_after: Option<u64>,
    /// The object storage behind `direct_download` answers every GET with the whole object (`200`), as a store
    /// or proxy that does not implement `Range` does.
    pub object_storage_ignores_range: bool,
}

pub(crate) struct FaultState {
    pub config: FaultConfig,
    rng: StdRng,
}

impl FaultState {
    pub fn new() -> FaultState {
        FaultState {
            config: FaultConfig::default(),
            rng: StdRng::seed_from_u64(0),
        }
    }

    fn apply(&mut self, config: FaultConfig) {
        self.rng = StdRng::seed_from_u64(config.seed.unwrap_or(0));
        self.config = config;
    }

    /// Draws a Bernoulli sample; probability 0 never consumes randomness so that enabling one
    /// fault does not shift the sequence of another.
    pub fn chance(&mut self, probability: f64) -> bool {
        if probability <= 0.0 {
            return false;
        }
        self.rng.random::<f64>() < probability
    }

    fn take_rule(&mut self, endpoint: Endpoint) -> Option<u16> {
        let rule = self
            .config
            .fail_next
            .iter_mut()
            .find(|r| r.count > 0 && r.endpoint.matches(endpoint))?;
        rule.count -= 1;
        let status = rule.status;
        self.config.fail_next.retain(|r| r.count > 0);
        Some(status)
    }
}

/// Handle to change faults of a running fake.
#[derive(Clone)]
pub struct FaultHandle {
    pub(crate) shared: Arc<Shared>,
}

impl FaultHandle {
    fn with(&self, f: impl FnOnce(&mut FaultState)) {
        f(&mut lock(&self.shared.faults));
    }
    /// Replace the whole configuration (reseeds the random generator).
    pub fn set(&self, config: FaultConfig) {
        self.with(|s| s.apply(config));
    }
    pub fn config(&self) -> FaultConfig {
        lock(&self.shared.faults).config.clone()
    }
    /// Reseed the generator: the same seed and request sequence give the same faults.
    pub fn seed(&self, seed: u64) {
        self.with(|s| {
            s.config.seed = Some(seed);
            s.rng = StdRng::seed_from_u64(seed);
        });
    }
    pub fn trace_5xx_probability(&self, p: f64) {
        self.with(|s| s.config.trace_5xx_probability = p);
    }
    pub fn trace_416_probability(&self, p: f64) {
        self.with(|s| s.config.trace_416_probability = p);
    }
    pub fn drop_connection_probability(&self, p: f64) {
        self.with(|s| s.config.drop_connection_probability = p);
    }
    pub fn delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.with(|s| s.config.delay_ms = ms);
    }
    /// The next `count` requests to `endpoint` answer `status` (and are not processed).
    pub fn fail_next(&self, endpoint: Endpoint, count: u32, status: u16) {
        self.with(|s| {
            s.config.fail_next.push(FailRule {
                endpoint,
                count,
                status,
            })
        });
    }
    pub fn retry_after(&self, seconds: Option<u64>) {
        self.with(|s| s.config.retry_after = seconds);
    }
    /// See [`FaultConfig::object_storage_ignores_range`].
    pub fn object_storage_ignores_range(&self, ignore: bool) {
        self.with(|s| s.config.object_storage_ignores_range = ignore);
    }
    /// Remove every fault.
    pub fn clear(&self) {
        self.set(FaultConfig::default());
    }
}

enum Decision {
    Pass,
    Fail(u16, Option<u64>),
    Drop,
}

pub(crate) async fn fault_layer(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let Some(endpoint) = Endpoint::classify(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let (delay, decision) = {
        let mut faults = lock(&shared.faults);
        let delay = faults.config.delay_ms;
        let decision = if let Some(status) = faults.take_rule(endpoint) {
            Decision::Fail(status, faults.config.retry_after)
        } else {
            let p = faults.config.drop_connection_probability;
            if faults.chance(p) {
                Decision::Drop
            } else if endpoint == Endpoint::TraceAppend {
                let p = faults.config.trace_5xx_probability;
                if faults.chance(p) {
                    Decision::Fail(500, faults.config.retry_after)
                } else {
                    Decision::Pass
                }
            } else {
                Decision::Pass
            }
        };
        (delay, decision)
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    match decision {
        Decision::Pass => next.run(req).await,
        Decision::Fail(status, retry_after) => injected_status(status, retry_after),
        Decision::Drop => dropped_connection(),
    }
}

fn injected_status(status: u16, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = code.canonical_reason().unwrap_or("Error");
    let body = serde_json::json!({ "message": format!("{status} {reason}") }).to_string();
    let mut resp = (code, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(v) = retry_after.and_then(|s| header::HeaderValue::from_str(&s.to_string()).ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// A response whose body fails immediately: hyper then closes the connection, so the client
/// sees a connection dropped before the message completed (like a dying load balancer).
fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "fault injection: connection dropped",
        ))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, header::HeaderValue::from_static("4096"));
    resp
}
