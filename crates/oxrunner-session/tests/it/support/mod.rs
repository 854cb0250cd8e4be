//! A Workhorse-like client: TLS trusting only the session server's certificate, WebSocket with a subprotocol and
//! the session token; plus plain HTTPS requests for the refusals.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use oxrunner_core::{Executor, ShellExecutor, Terminal, Variable, Variables};
use oxrunner_session::{JobSession, SessionServer, SessionServerSettings};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

pub type Ws = WebSocketStream<TlsStream<TcpStream>>;

pub async fn server(dir: &Path, timeout: Duration) -> SessionServer {
    SessionServer::start(SessionServerSettings {
        listen_address: "127.0.0.1:0".into(),
        advertise_address: None,
        session_timeout: timeout,
        cert_dir: dir.to_path_buf(),
    })
    .await
    .unwrap()
}

/// The shell executor's terminal for a job whose project directory is `project` and whose id is `job_id`.
pub fn shell_terminal(project: &Path, job_id: &str) -> Arc<dyn Terminal> {
    let mut vars = Variables::new();
    vars.push(Variable::new("CI_PROJECT_DIR", project.to_string_lossy()));
    vars.push(Variable::new("CI_JOB_ID", job_id));
    vars.push(Variable::masked("OXRT_SECRET", "s3cr3t-value-in-env"));
    let mut shell = ShellExecutor::new().with_login_shell(false);
    shell.job_variables(&vars);
    shell.terminal().unwrap()
}

async fn tls(server: &SessionServer) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(server.certificate_pem().as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// The path part of the session URL plus `/exec`.
pub fn exec_path(session: &JobSession) -> String {
    let url = &session.info().url;
    let path = &url[url.find("/session/").unwrap()..];
    format!("{path}/exec")
}

/// Opens the terminal as Workhorse would; `Err` carries the HTTP status of a refusal.
pub async fn connect(
    server: &SessionServer,
    path: &str,
    token: Option<&str>,
    protocol: &str,
) -> Result<Ws, u16> {
    let url = format!("wss://127.0.0.1:{}{path}", server.local_addr().port());
    let mut req = url.into_client_request().unwrap();
    if let Some(token) = token {
        req.headers_mut().insert("Authorization", token.parse().unwrap());
    }
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let stream = tls(server).await;
    let config = WebSocketConfig::default().max_message_size(Some(16 << 20));
    match tokio_tungstenite::client_async_with_config(req, stream, Some(config)).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        Err(other) => panic!("websocket handshake failed: {other}"),
    }
}

/// A plain HTTPS request (no upgrade); the status code.
pub async fn plain_request(server: &SessionServer, method: &str, path: &str, token: Option<&str>) -> u16 {
    let mut stream = tls(server).await;
    let auth = token
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    let _ = stream.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sends terminal input in the framing of `protocol`.
pub async fn send_input(ws: &mut Ws, protocol: &str, bytes: &[u8]) {
    use base64::Engine;
    let b64 = || base64::engine::general_purpose::STANDARD.encode(bytes);
    let msg = match protocol {
        "base64.terminal.gitlab.com" => Message::Text(b64().into()),
        "channel.k8s.io" => Message::Binary([&[0u8][..], bytes].concat().into()),
        "base64.channel.k8s.io" => Message::Text(format!("0{}", b64()).into()),
        _ => Message::Binary(bytes.to_vec().into()),
    };
    ws.send(msg).await.unwrap();
}

/// Reads terminal output (decoded) until it contains `needle`; everything read so far.
pub async fn read_until(ws: &mut Ws, protocol: &str, needle: &str, seen: &mut String) {
    use base64::Engine;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains(needle) {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} from the terminal; got:\n{seen}"))
            .unwrap_or_else(|| panic!("terminal closed before {needle:?}; got:\n{seen}"))
            .unwrap();
        let data: Vec<u8> = match msg {
            Message::Binary(b) => b.to_vec(),
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Close(_) => panic!("terminal closed before {needle:?}; got:\n{seen}"),
            _ => continue,
        };
        let decoded = match protocol {
            "base64.terminal.gitlab.com" => base64::engine::general_purpose::STANDARD.decode(&data).unwrap(),
            "channel.k8s.io" => data[1..].to_vec(),
            "base64.channel.k8s.io" => base64::engine::general_purpose::STANDARD
                .decode(&data[1..])
                .unwrap(),
            _ => data,
        };
        seen.push_str(&String::from_utf8_lossy(&decoded));
    }
}

/// Polls `cond` until it holds (the deadline only guards against hanging).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// True when root-only tests can run here; under `CI=true` they must, so a missing piece fails the test.
pub fn root_tests_can_run(what: &str, tools: &[&str]) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".to_owned());
    }
    for tool in tools {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push((*tool).to_owned());
        }
    }
    if missing.is_empty() {
        return true;
    }
    assert!(!ci, "CI=true but {what} cannot run: missing {missing:?}");
    eprintln!("SKIPPED: {what} needs {missing:?} (it runs under CI=true)");
    false
}

/// A throwaway user `oxrt-<tag>-<pid>`, removed on drop even when the test fails.
pub struct TempUser {
    pub name: String,
}

impl TempUser {
    pub fn create(tag: &str) -> TempUser {
        let name = format!("oxrt-{tag}-{}", std::process::id());
        let out = std::process::Command::new("useradd")
            .args(["-M", "-U", "-s", "/usr/sbin/nologin", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TempUser { name }
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel").arg(&self.name).output();
    }
}
