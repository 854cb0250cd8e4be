//! Issue #18 acceptance: the interactive web terminal through `oxrunner run`. The test is the WebSocket client
//! Workhorse would be: it takes the session GitLab recorded from the job request (URL, certificate, token),
//! trusts only that certificate, opens `<session URL>/exec`, runs commands in the job's environment, resizes and
//! closes; the job then completes with gitlab-runner's trace lines, and nothing typed reaches the trace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use fake_gitlab::{FakeGitlab, JobRecord, JobSpec};
use futures::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::support::{Daemon, Sandbox, fake, finished, global_toml, shell_runner_toml, wait_status};

const FINISH: Duration = Duration::from_secs(90);

type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// A port that was free a moment ago, for `listen_address`.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(fake: &FakeGitlab, sb: &Sandbox, session_server: &str) -> Daemon {
    let token = fake.create_runner_token("terminal");
    let text = global_toml(1, session_server)
        + &shell_runner_toml("terminal", &fake.url(), &token, sb.dir.path(), "");
    std::fs::write(sb.config(), text).unwrap();
    let cfg = sb.config_str();
    sb.spawn(&["run", "-c", &cfg])
}

/// The session GitLab recorded for the job, once the job runs.
async fn recorded_session(fake: &FakeGitlab, id: i64, d: &Daemon) -> serde_json::Value {
    let job = wait_status(fake, id, "running", FINISH).await;
    job.session
        .unwrap_or_else(|| panic!("no session in the job request; log:\n{}", d.log()))
}

/// Connects to `<url>/exec` as Workhorse does: TLS pinned to the session's certificate, the token in
/// `Authorization`. `Err` is the HTTP status of a refusal.
async fn connect(session: &serde_json::Value, token: &str, protocol: &str) -> Result<Ws, u16> {
    let url = session["url"].as_str().unwrap();
    let cert = session["certificate"].as_str().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let authority = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let host = authority.rsplit_once(':').unwrap().0.to_string();
    let tcp = TcpStream::connect(&authority).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(host).unwrap(), tcp)
        .await
        .unwrap();
    let mut req = format!("{}/exec", url.replacen("https://", "wss://", 1))
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("Authorization", token.parse().unwrap());
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        Err(other) => panic!("websocket handshake failed: {other}"),
    }
}

/// Terminal input: binary on `terminal.gitlab.com`, channel 0 on `channel.k8s.io`.
async fn type_in(ws: &mut Ws, protocol: &str, text: &str) {
    let msg = if protocol == "channel.k8s.io" {
        Message::Binary([&[0u8][..], text.as_bytes()].concat().into())
    } else {
        Message::Binary(text.as_bytes().to_vec().into())
    };
    ws.send(msg).await.unwrap();
}

async fn read_until(ws: &mut Ws, protocol: &str, needle: &str, seen: &mut String) {
    let deadline = tokio::time::Instant::now() + FINISH;
    while !seen.contains(needle) {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} from the terminal; got:\n{seen}"))
            .unwrap_or_else(|| panic!("terminal closed before {needle:?}; got:\n{seen}"))
            .unwrap();
        let data = match msg {
            Message::Binary(b) if protocol == "channel.k8s.io" => b[1..].to_vec(),
            Message::Binary(b) => b.to_vec(),
            Message::Close(_) => panic!("terminal closed before {needle:?}; got:\n{seen}"),
            _ => continue,
        };
        seen.push_str(&String::from_utf8_lossy(&data));
    }
}

fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name
}

/// The script waits for the terminal to create `release-me` in the project directory.
fn waiting_job(name: &str) -> JobSpec {
    JobSpec::new(
        name,
        &[
            "echo \"PD<$(pwd -P)>\"",
            "until [ -e release-me ]; do sleep 0.2; done",
            "echo script-finished",
        ],
    )
    .variable("GIT_STRATEGY", "none")
    .masked_variable("OXRT_TERMINAL_SECRET", "Term1nalS3cretValue")
}

/// Opens the terminal twice on a running job (Workhorse's framing, then the channel framing to resize), lets the
/// script finish from the terminal and closes; returns the finished job.
async fn drive_terminal(fake: &FakeGitlab, d: &Daemon, id: i64, project_dir: &str, user: &str) -> JobRecord {
    let session = recorded_session(fake, id, d).await;
    let token = session["authorization"].as_str().unwrap().to_string();
    let p = "terminal.gitlab.com";
    assert_eq!(connect(&session, "not-the-token", p).await.err(), Some(401));
    // A client that sends garbage and then an oversized message only loses its own connection.
    let mut bad = connect(&session, &token, "base64.terminal.gitlab.com")
        .await
        .unwrap();
    bad.send(Message::Text("%%% not base64".into())).await.unwrap();
    bad.send(Message::Binary(vec![b'x'; 2 * 1024 * 1024].into()))
        .await
        .ok();
    while let Some(Ok(_)) = bad.next().await {}
    drop(bad);

    let mut ws = loop {
        match connect(&session, &token, p).await {
            Ok(ws) => break ws,
            // The hammering client may still be detaching.
            Err(423) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(status) => panic!("terminal refused: {status}"),
        }
    };
    let mut seen = String::new();
    type_in(
        &mut ws,
        p,
        "printf 'D<%s>\\n' \"$(pwd -P)\"; printf 'U<%s>\\n' \"$(id -un)\"; printf 'J<%s>\\n' \"$CI_JOB_ID\"\r",
    )
    .await;
    read_until(&mut ws, p, &format!("D<{project_dir}>"), &mut seen).await;
    read_until(&mut ws, p, &format!("U<{user}>"), &mut seen).await;
    read_until(&mut ws, p, &format!("J<{id}>"), &mut seen).await;
    // Typed only here; the secret's value is printed only here.
    type_in(
        &mut ws,
        p,
        "echo typed-only-in-the-terminal-4711; echo \"$OXRT_TERMINAL_SECRET\"\r",
    )
    .await;
    read_until(&mut ws, p, "Term1nalS3cretValue", &mut seen).await;
    ws.close(None).await.unwrap();
    drop(ws);

    // A second client after the first left, framed with channels so it can resize.
    let p = "channel.k8s.io";
    let mut ws = loop {
        match connect(&session, &token, p).await {
            Ok(ws) => break ws,
            // The first client may still be detaching.
            Err(423) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(status) => panic!("second terminal refused: {status}"),
        }
    };
    let mut seen = String::new();
    ws.send(Message::Binary(
        [&[4u8][..], br#"{"Width":101,"Height":33}"#].concat().into(),
    ))
    .await
    .unwrap();
    type_in(&mut ws, p, "printf 'S<%s>\\n' \"$(stty size)\"\r").await;
    read_until(&mut ws, p, "S<33 101>", &mut seen).await;
    type_in(&mut ws, p, "touch release-me\r").await;
    // The script finishes; the job now waits for this terminal.
    let deadline = tokio::time::Instant::now() + FINISH;
    while !fake
        .job(id)
        .unwrap()
        .trace_text()
        .contains("Terminal is connected, will time out in")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no terminal wait; log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        fake.job(id).unwrap().status,
        "running",
        "the job must wait for the terminal"
    );
    ws.close(None).await.unwrap();
    let job = finished(fake, id, FINISH, d).await;
    assert_eq!(
        connect(&session, &token, p).await.err(),
        Some(404),
        "a finished job's session is gone"
    );
    job
}

fn assert_trace(job: &JobRecord, timeout_line: &str) {
    let trace = job.trace_text();
    assert_eq!(job.status, "success", "{trace}");
    assert!(trace.contains(timeout_line), "{trace}");
    assert!(trace.contains("Terminal disconnected"), "{trace}");
    assert!(trace.contains("script-finished"), "{trace}");
    assert!(
        !trace.contains("typed-only-in-the-terminal"),
        "terminal input in the trace:\n{trace}"
    );
    assert!(!trace.contains("Term1nalS3cretValue"), "{trace}");
    assert!(!trace.contains("S<33"), "terminal output in the trace:\n{trace}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_job_gets_a_terminal_as_workhorse_opens_it() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let port = free_port();
    let d = start(
        &fake,
        &sb,
        &format!("[session_server]\n  listen_address = \"127.0.0.1:{port}\"\n  session_timeout = 600\n"),
    );
    let id = fake.enqueue_job(waiting_job("terminal"));
    let session = recorded_session(&fake, id, &d).await;
    let url = session["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("https://127.0.0.1:{port}/session/")),
        "{url}"
    );
    // GitLab sends the session URL back in the payload, and keeps the certificate the runner stores beside
    // config.toml (mode 0600).
    let payload = fake.job(id).unwrap().payload.unwrap();
    assert_eq!(payload["runner_info"]["runner_session_url"], session["url"]);
    let (crt, key) = oxrunner_session_paths(&sb, "127.0.0.1");
    assert_eq!(
        std::fs::read_to_string(&crt).unwrap(),
        session["certificate"].as_str().unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let runner = &fake.runners()[0];
    assert!(
        runner.feature("session") && runner.feature("terminal"),
        "{:?}",
        runner.info
    );

    let project_dir = script_dir(&fake, id, &d).await;
    let job = drive_terminal(&fake, &d, id, &project_dir, &me()).await;
    assert_trace(&job, "Terminal is connected, will time out in 10m0s...");
}

/// The directory the job's script runs in, as it printed it (`PD<...>`).
async fn script_dir(fake: &FakeGitlab, id: i64, d: &Daemon) -> String {
    let deadline = tokio::time::Instant::now() + FINISH;
    loop {
        let trace = fake.job(id).unwrap().trace_text();
        // The echoed command shows `PD<$(pwd -P)>`; its output starts with a path.
        if let Some((_, rest)) = trace.split_once("PD</")
            && let Some((dir, _)) = rest.split_once('>')
        {
            return format!("/{dir}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no PD<> line; log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn oxrunner_session_paths(sb: &Sandbox, host: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = sb.config().parent().unwrap().to_path_buf();
    (
        dir.join(format!("session-server-{host}.crt")),
        dir.join(format!("session-server-{host}.key")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn without_session_server_no_session_is_offered() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, "");
    let id = fake.enqueue_job(JobSpec::new("plain", &["echo hi"]).variable("GIT_STRATEGY", "none"));
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success");
    assert!(job.session.is_none());
    let runner = &fake.runners()[0];
    assert!(
        !runner.feature("session") && !runner.feature("terminal"),
        "{:?}",
        runner.info
    );
    assert!(!job.trace_text().contains("Terminal"), "{}", job.trace_text());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a Docker engine: scripts/test runs it (--include-ignored) when one answers, and under CI=true"]
async fn docker_job_gets_a_terminal_in_its_container() {
    use crate::support::docker::{self as dk, DockerOpts, Env};
    assert!(dk::docker_available(), "no Docker engine");
    let fake = fake(1, 1).await;
    let token = fake.create_runner_token("docker-terminal");
    let short = oxrunner_config::short_token(&token);
    let sb = dk::Sandbox::new();
    let port = free_port();
    let config = dk::config_toml(&fake.url(), &token, &DockerOpts::default()).replacen(
        "\n[[runners]]",
        &format!("\n[session_server]\n  listen_address = \"127.0.0.1:{port}\"\n  session_timeout = 600\n\n[[runners]]"),
        1,
    );
    std::fs::write(sb.config(), config).unwrap();
    let mut env = Env {
        fake,
        sb,
        token,
        short,
        daemon: None,
    };
    env.start_daemon("oxrunner-run.log");
    let id = env.fake.enqueue_job(waiting_job("docker-terminal"));
    let d = env.daemon.as_ref().unwrap();
    let daemon_log = || d.log();
    let session = {
        let job = wait_status(&env.fake, id, "running", FINISH).await;
        job.session
            .unwrap_or_else(|| panic!("no session; log:\n{}", daemon_log()))
    };
    let token = session["authorization"].as_str().unwrap().to_string();
    let project_dir = {
        let deadline = tokio::time::Instant::now() + FINISH;
        loop {
            let trace = env.fake.job(id).unwrap().trace_text();
            if let Some((_, rest)) = trace.split_once("PD</")
                && let Some((dir, _)) = rest.split_once('>')
            {
                break format!("/{dir}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no PD<> line:\n{trace}\n{}",
                daemon_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    let p = "terminal.gitlab.com";
    let mut ws = connect(&session, &token, p).await.unwrap();
    let mut seen = String::new();
    type_in(
        &mut ws,
        p,
        "printf 'D<%s>\\n' \"$(pwd -P)\"; printf 'U<%s>\\n' \"$(id -un)\"; printf 'J<%s>\\n' \"$CI_JOB_ID\"\r",
    )
    .await;
    read_until(&mut ws, p, &format!("D<{project_dir}>"), &mut seen).await;
    read_until(&mut ws, p, "U<root>", &mut seen).await;
    read_until(&mut ws, p, &format!("J<{id}>"), &mut seen).await;
    type_in(
        &mut ws,
        p,
        "echo typed-only-in-the-terminal-4711; echo \"$OXRT_TERMINAL_SECRET\"\r",
    )
    .await;
    read_until(&mut ws, p, "Term1nalS3cretValue", &mut seen).await;
    ws.close(None).await.unwrap();
    drop(ws);

    let p = "channel.k8s.io";
    let mut ws = loop {
        match connect(&session, &token, p).await {
            Ok(ws) => break ws,
            Err(423) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(status) => panic!("second terminal refused: {status}"),
        }
    };
    let mut seen = String::new();
    ws.send(Message::Binary(
        [&[4u8][..], br#"{"Width":101,"Height":33}"#].concat().into(),
    ))
    .await
    .unwrap();
    type_in(&mut ws, p, "printf 'S<%s>\\n' \"$(stty size)\"\r").await;
    read_until(&mut ws, p, "S<33 101>", &mut seen).await;
    type_in(&mut ws, p, "touch release-me\r").await;
    env.wait_trace(id, "Terminal is connected, will time out in")
        .await;
    ws.close(None).await.unwrap();
    let job = env.finished(id).await;
    assert_eq!(connect(&session, &token, p).await.err(), Some(404));
    assert_trace(&job, "Terminal is connected, will time out in 10m0s...");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_server_added_to_config_toml_takes_effect_on_reload() {
    let fake = fake(1, 1).await;
    let sb = Sandbox::new();
    let d = start(&fake, &sb, "");
    crate::support::wait_polling(&fake, &d, FINISH).await;
    let text = std::fs::read_to_string(sb.config()).unwrap();
    let port = free_port();
    let with_server = text.replacen(
        "\n[[runners]]",
        &format!("[session_server]\n  listen_address = \"127.0.0.1:{port}\"\n\n[[runners]]"),
        1,
    );
    std::fs::write(sb.config(), with_server).unwrap();
    let deadline = tokio::time::Instant::now() + FINISH;
    while !d.log().contains("session server listening") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload; log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = fake.enqueue_job(JobSpec::new("after-reload", &["echo hi"]).variable("GIT_STRATEGY", "none"));
    let job = finished(&fake, id, FINISH, &d).await;
    assert_eq!(job.status, "success", "{}", job.trace_text());
    let url = job
        .session
        .as_ref()
        .map(|s| s["url"].as_str().unwrap().to_string());
    assert!(
        url.as_deref()
            .is_some_and(|u| u.starts_with(&format!("https://127.0.0.1:{port}/session/"))),
        "{url:?}\n{}",
        d.log()
    );
    assert!(fake.runners()[0].feature("terminal"));
}
