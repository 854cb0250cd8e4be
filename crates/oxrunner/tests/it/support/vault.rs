//! A Vault stand-in on 127.0.0.1 that answers as Vault's HTTP API does for what the secret resolvers use:
//! `POST /v1/auth/<mount>/login` of the jwt method (checks the role and the JWT, hands out a token bound to the
//! namespace it was made in), reads of kv-v2 (`<mount>/data/<path>`) and kv-v1 (`<mount>/<path>`) mounts that
//! need `X-Vault-Token`, mounts living in a namespace (`X-Vault-Namespace`), OpenBao's inline authentication
//! (`X-Vault-Inline-Auth-*`), and errors as `{"errors": [...]}`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

/// One request as the stand-in saw it (header names lower-case; values of token headers kept for checks).
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    KvV2,
    KvV1,
}

struct Mount {
    namespace: String,
    engine: Engine,
    secrets: BTreeMap<String, Value>,
}

struct Role {
    namespace: String,
    mount: String,
    jwt: String,
}

#[derive(Default)]
struct Inner {
    mounts: BTreeMap<String, Mount>,
    roles: BTreeMap<String, Role>,
    /// token → namespace it is valid in.
    tokens: BTreeMap<String, String>,
    seen: Vec<SeenRequest>,
    next_token: u64,
    /// The next requests answered with this status, as a sealed or overloaded server answers.
    failing: Option<(u32, StatusCode)>,
}

#[derive(Clone)]
pub struct FakeVault {
    inner: Arc<Mutex<Inner>>,
    url: String,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeVault {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

impl FakeVault {
    pub async fn start() -> FakeVault {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeVault {
            inner,
            url,
            task: Arc::new(task),
        }
    }

    /// The stand-in over HTTPS with `tls`'s certificate (for `127.0.0.1`).
    pub async fn start_tls(tls: &fake_gitlab::TlsMaterial) -> FakeVault {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new().fallback(handle).with_state(inner.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let config = axum_server::tls_rustls::RustlsConfig::from_pem(
            tls.cert_pem.clone().into_bytes(),
            tls.key_pem.clone().into_bytes(),
        )
        .await
        .unwrap();
        let server = axum_server::from_tcp_rustls(listener, config).unwrap();
        let task = tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        FakeVault {
            inner,
            url,
            task: Arc::new(task),
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Mounts a secrets engine at `path` in `namespace` ("" = root).
    pub fn mount(&self, namespace: &str, path: &str, engine: Engine) {
        self.inner.lock().unwrap().mounts.insert(
            path.to_owned(),
            Mount {
                namespace: namespace.to_owned(),
                engine,
                secrets: BTreeMap::new(),
            },
        );
    }

    /// Stores `data` (key/value pairs) at `path` of the mount `mount`.
    pub fn put(&self, mount: &str, path: &str, data: Value) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .mounts
            .get_mut(mount)
            .expect("mount first")
            .secrets
            .insert(path.to_owned(), data);
    }

    /// A jwt-method role on the auth mount `auth_mount` of `namespace`, accepting exactly `jwt`.
    pub fn role(&self, namespace: &str, auth_mount: &str, role: &str, jwt: &str) {
        self.inner.lock().unwrap().roles.insert(
            role.to_owned(),
            Role {
                namespace: namespace.to_owned(),
                mount: auth_mount.to_owned(),
                jwt: jwt.to_owned(),
            },
        );
    }

    /// Answers the next `count` requests with `status` (`{"errors": ["Vault is sealed"]}`).
    pub fn fail_next(&self, count: u32, status: u16) {
        self.inner.lock().unwrap().failing = Some((count, StatusCode::from_u16(status).unwrap()));
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.inner.lock().unwrap().seen.clone()
    }
}

fn errors(status: StatusCode, errors: &[&str]) -> Response {
    (status, axum::Json(json!({ "errors": errors }))).into_response()
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut inner = inner.lock().unwrap();
    inner.seen.push(SeenRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if let Some((count, status)) = inner.failing.take() {
        if count > 1 {
            inner.failing = Some((count - 1, status));
        }
        return errors(status, &["Vault is sealed"]);
    }
    let namespace = header("x-vault-namespace").trim_matches('/').to_owned();
    let Some(path) = uri.path().strip_prefix("/v1/") else {
        return errors(StatusCode::NOT_FOUND, &[]);
    };
    // Vault takes a write as POST or PUT (OpenBao's Go client sends PUT).
    if matches!(method, Method::POST | Method::PUT)
        && let Some(mount) = path.strip_prefix("auth/").and_then(|p| p.strip_suffix("/login"))
    {
        let params: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return match login(&mut inner, &namespace, mount, &params) {
            Ok(token) => axum::Json(json!({
                "request_id": "5e3d5e3d-0000-0000-0000-000000000000",
                "lease_id": "", "renewable": false, "lease_duration": 0, "data": null, "warnings": null,
                "auth": {"client_token": token, "accessor": "acc", "policies": ["default", "ci"],
                         "token_policies": ["default", "ci"], "lease_duration": 3600, "renewable": true}
            }))
            .into_response(),
            Err((status, msg)) => errors(status, &[&msg]),
        };
    }
    if method != Method::GET {
        return errors(StatusCode::METHOD_NOT_ALLOWED, &["unsupported operation"]);
    }
    // A token, or OpenBao's inline authentication performed for this request only.
    let inline_path = header("x-vault-inline-auth-path");
    let token_ns = if inline_path.is_empty() {
        match inner.tokens.get(&header("x-vault-token")) {
            Some(ns) => ns.clone(),
            None => return errors(StatusCode::FORBIDDEN, &["permission denied"]),
        }
    } else {
        let Some(mount) = inline_path
            .strip_prefix("auth/")
            .and_then(|p| p.strip_suffix("/login"))
        else {
            return errors(
                StatusCode::BAD_REQUEST,
                &["inline auth path must be a login path"],
            );
        };
        let mut params = serde_json::Map::new();
        for (name, value) in &headers {
            if name.as_str().starts_with("x-vault-inline-auth-parameter-") {
                let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(value.as_bytes())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                let Some(kv) = decoded else {
                    return errors(StatusCode::BAD_REQUEST, &["malformed inline auth parameter"]);
                };
                if let (Some(k), Some(v)) = (kv["key"].as_str(), kv.get("value")) {
                    params.insert(k.to_owned(), v.clone());
                }
            }
        }
        if let Err((status, msg)) = login(&mut inner, &namespace, mount, &Value::Object(params)) {
            return errors(status, &[&msg]);
        }
        namespace.clone()
    };
    if token_ns != namespace {
        return errors(StatusCode::FORBIDDEN, &["permission denied"]);
    }
    read(&inner, &namespace, path)
}

/// The token of a successful jwt login, or Vault's error answer (status and message).
fn login(
    inner: &mut Inner,
    namespace: &str,
    mount: &str,
    params: &Value,
) -> Result<String, (StatusCode, String)> {
    let mount_known = inner
        .roles
        .values()
        .any(|r| r.mount == mount && r.namespace == namespace);
    if !mount_known {
        let route = format!("no handler for route \"auth/{mount}/login\". route entry not found.");
        return Err((StatusCode::NOT_FOUND, route));
    }
    let role_name = params["role"].as_str().unwrap_or_default();
    let Some(role) = inner
        .roles
        .get(role_name)
        .filter(|r| r.mount == mount && r.namespace == namespace)
    else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("role \"{role_name}\" could not be found"),
        ));
    };
    match params["jwt"].as_str() {
        None | Some("") => return Err((StatusCode::BAD_REQUEST, "missing token".into())),
        Some(jwt) if jwt != role.jwt => {
            return Err((
                StatusCode::BAD_REQUEST,
                "error validating token: invalid signature".into(),
            ));
        }
        Some(_) => {}
    }
    inner.next_token += 1;
    let token = format!("hvs.fake{:08}", inner.next_token);
    inner.tokens.insert(token.clone(), namespace.to_owned());
    Ok(token)
}

fn read(inner: &Inner, namespace: &str, path: &str) -> Response {
    let (mount_path, mount) = match inner
        .mounts
        .iter()
        .filter(|(m, mount)| mount.namespace == namespace && path.starts_with(&format!("{m}/")))
        .max_by_key(|(m, _)| m.len())
    {
        Some(found) => found,
        None => {
            let msg = format!("no handler for route \"{path}\". route entry not found.");
            return errors(StatusCode::NOT_FOUND, &[&msg]);
        }
    };
    let rest = &path[mount_path.len() + 1..];
    match mount.engine {
        Engine::KvV2 => {
            let Some(key) = rest.strip_prefix("data/") else {
                return errors(StatusCode::NOT_FOUND, &[]);
            };
            match mount.secrets.get(key) {
                Some(data) => axum::Json(json!({
                    "request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
                    "data": {"data": data, "metadata": {"created_time": "2026-01-01T00:00:00Z",
                             "deletion_time": "", "destroyed": false, "version": 1}},
                    "warnings": null, "auth": null
                }))
                .into_response(),
                None => errors(StatusCode::NOT_FOUND, &[]),
            }
        }
        Engine::KvV1 => match mount.secrets.get(rest) {
            Some(data) => axum::Json(json!({
                "request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 2_764_800,
                "data": data, "warnings": null, "auth": null
            }))
            .into_response(),
            None => errors(StatusCode::NOT_FOUND, &[]),
        },
    }
}
