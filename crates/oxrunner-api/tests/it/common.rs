//! A scriptable HTTP(S) server on 127.0.0.1 that records every request.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use oxrunner_api::{Client, ClientConfig};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

pub type Script = dyn Fn(&Req, usize) -> Response + Send + Sync;

/// The server: the script gets each request and how many requests came before it.
pub struct Server {
    pub url: String,
    pub reqs: Arc<Mutex<Vec<Req>>>,
}

impl Server {
    pub fn requests(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }
    pub fn client(&self) -> Client {
        Client::new(ClientConfig {
            url: self.url.clone(),
            ..Default::default()
        })
        .unwrap()
    }
}

fn router(script: Arc<Script>, reqs: Arc<Mutex<Vec<Req>>>) -> axum::Router {
    axum::Router::new().fallback(move |req: Request<Body>| {
        let script = script.clone();
        let reqs = reqs.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            let r = Req {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or("").to_string(),
                headers: parts.headers,
                body,
            };
            let n = {
                let mut g = reqs.lock().unwrap();
                g.push(r.clone());
                g.len() - 1
            };
            script(&r, n)
        }
    })
}

pub async fn start(script: impl Fn(&Req, usize) -> Response + Send + Sync + 'static) -> Server {
    let reqs = Arc::new(Mutex::new(Vec::new()));
    let app = router(Arc::new(script), reqs.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server {
        url: format!("http://{addr}/"),
        reqs,
    }
}

/// Same, over TLS with the given PEM certificate chain and key; the URL uses `host`.
pub async fn start_tls(
    host: &str,
    cert_pem: String,
    key_pem: String,
    script: impl Fn(&Req, usize) -> Response + Send + Sync + 'static,
) -> Server {
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(cert_pem.into_bytes(), key_pem.into_bytes())
        .await
        .unwrap();
    start_tls_with(host, config, script).await
}

/// TLS server with a prepared rustls configuration (e.g. one that requires client certificates).
pub async fn start_tls_with(
    host: &str,
    config: axum_server::tls_rustls::RustlsConfig,
    script: impl Fn(&Req, usize) -> Response + Send + Sync + 'static,
) -> Server {
    let reqs = Arc::new(Mutex::new(Vec::new()));
    let app = router(Arc::new(script), reqs.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = axum_server::from_tcp_rustls(listener, config).unwrap();
    tokio::spawn(async move {
        let _ = server.serve(app.into_make_service()).await;
    });
    Server {
        url: format!("https://{host}:{}/", addr.port()),
        reqs,
    }
}

pub fn resp(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut b = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).unwrap()
}

pub fn json(status: u16, headers: &[(&str, &str)], v: serde_json::Value) -> Response {
    let mut h = headers.to_vec();
    h.push(("Content-Type", "application/json"));
    resp(status, &h, v.to_string())
}
