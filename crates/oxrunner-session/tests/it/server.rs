//! The session server: a terminal as Workhorse opens it, the refusals in gitlab-runner's order, one terminal per
//! job, the end of a job or of `session_timeout` closing it, the certificate on disk, and a hammering that leaves
//! the server and the session working.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use oxrunner_core::TerminalSession;
use oxrunner_session::{SessionServer, SessionServerSettings};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{
    connect, eventually, exec_path, plain_request, read_until, send_input, server, shell_terminal,
};

const HOUR: Duration = Duration::from_secs(3600);

fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name
}

#[tokio::test(flavor = "multi_thread")]
async fn terminal_is_a_shell_in_the_project_dir_with_the_job_env() {
    for protocol in ["terminal.gitlab.com", "base64.terminal.gitlab.com"] {
        let dir = tempfile::tempdir().unwrap();
        let project = tempfile::tempdir().unwrap();
        let srv = server(dir.path(), HOUR).await;
        let session = srv.create_session();
        session.offer(shell_terminal(project.path(), "4242"));
        let token = session.info().authorization.clone();
        let mut ws = connect(&srv, &exec_path(&session), Some(&token), protocol)
            .await
            .unwrap();
        eventually("the session to count the client", || session.connected()).await;
        send_input(
            &mut ws,
            protocol,
            b"printf 'D<%s>\\n' \"$PWD\"; printf 'U<%s>\\n' \"$(id -un)\"; printf 'J<%s>\\n' \"$CI_JOB_ID\"\r",
        )
        .await;
        let mut seen = String::new();
        let project_dir = project.path().canonicalize().unwrap();
        read_until(
            &mut ws,
            protocol,
            &format!("D<{}>", project_dir.display()),
            &mut seen,
        )
        .await;
        read_until(&mut ws, protocol, &format!("U<{}>", me()), &mut seen).await;
        read_until(&mut ws, protocol, "J<4242>", &mut seen).await;
        ws.close(None).await.unwrap();
        // The job side sees the client go.
        tokio::time::timeout(Duration::from_secs(30), session.disconnected())
            .await
            .expect("disconnected() resolves once the client left");
        assert!(!session.connected());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resize_reaches_the_shell_on_the_channel_framing() {
    for protocol in ["channel.k8s.io", "base64.channel.k8s.io"] {
        let dir = tempfile::tempdir().unwrap();
        let project = tempfile::tempdir().unwrap();
        let srv = server(dir.path(), HOUR).await;
        let session = srv.create_session();
        session.offer(shell_terminal(project.path(), "7"));
        let token = session.info().authorization.clone();
        let mut ws = connect(&srv, &exec_path(&session), Some(&token), protocol)
            .await
            .unwrap();
        let mut seen = String::new();
        send_input(&mut ws, protocol, b"printf 'S<%s>\\n' \"$(stty size)\"\r").await;
        read_until(&mut ws, protocol, "S<24 80>", &mut seen).await;
        let resize = br#"{"Width":132,"Height":43}"#;
        let msg = if protocol.starts_with("base64") {
            use base64::Engine;
            Message::Text(format!("4{}", base64::engine::general_purpose::STANDARD.encode(resize)).into())
        } else {
            Message::Binary([&[4u8][..], resize].concat().into())
        };
        ws.send(msg).await.unwrap();
        send_input(&mut ws, protocol, b"printf 'S<%s>\\n' \"$(stty size)\"\r").await;
        read_until(&mut ws, protocol, "S<43 132>", &mut seen).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_follow_gitlab_runner() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), HOUR).await;
    let session = srv.create_session();
    let token = session.info().authorization.clone();
    let path = exec_path(&session);
    let proto = "terminal.gitlab.com";

    assert_eq!(connect(&srv, &path, Some("wrong"), proto).await.err(), Some(401));
    assert_eq!(connect(&srv, &path, None, proto).await.err(), Some(401));
    // Same length, one character off: still refused.
    let mut near = token.clone().into_bytes();
    near[0] = if near[0] == b'a' { b'b' } else { b'a' };
    let near = String::from_utf8(near).unwrap();
    assert_eq!(connect(&srv, &path, Some(&near), proto).await.err(), Some(401));
    assert_eq!(plain_request(&srv, "GET", &path, Some("wrong")).await, 401);

    assert_eq!(plain_request(&srv, "GET", &path, Some(&token)).await, 405);
    assert_eq!(plain_request(&srv, "POST", &path, Some(&token)).await, 405);

    assert_eq!(
        plain_request(&srv, "GET", "/session/0123/exec", Some(&token)).await,
        404
    );
    assert_eq!(plain_request(&srv, "GET", "/", Some(&token)).await, 404);
    let base = path.trim_end_matches("/exec").to_string();
    assert_eq!(plain_request(&srv, "GET", &base, Some(&token)).await, 404);

    // A finished job's session is gone.
    drop(session);
    assert_eq!(plain_request(&srv, "GET", &path, Some(&token)).await, 404);
    assert_eq!(connect(&srv, &path, Some(&token), proto).await.err(), Some(404));
    assert_eq!(srv.sessions(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_terminal_per_job_and_the_job_end_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), HOUR).await;
    let session = srv.create_session();
    session.offer(shell_terminal(project.path(), "1"));
    let token = session.info().authorization.clone();
    let path = exec_path(&session);
    let proto = "terminal.gitlab.com";
    let mut ws = connect(&srv, &path, Some(&token), proto).await.unwrap();
    let mut seen = String::new();
    send_input(&mut ws, proto, b"echo rea''dy\r").await;
    read_until(&mut ws, proto, "ready", &mut seen).await;
    assert_eq!(connect(&srv, &path, Some(&token), proto).await.err(), Some(423));

    // The job ends: the terminal is closed from the server side and the session refuses new clients.
    session.close().await;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(msg)) = ws.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the terminal stayed open after the job ended");
    assert_eq!(connect(&srv, &path, Some(&token), proto).await.err(), Some(404));
}

/// `session_timeout` bounds how long a terminal may keep a job open after its scripts (the driver's wait, tested
/// in oxrunner-core); while the job runs the server itself never cuts an attached terminal.
#[tokio::test(flavor = "multi_thread")]
async fn session_timeout_does_not_end_a_terminal_while_the_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), Duration::from_secs(1)).await;
    let session = srv.create_session();
    session.offer(shell_terminal(project.path(), "1"));
    let token = session.info().authorization.clone();
    let proto = "terminal.gitlab.com";
    let mut ws = connect(&srv, &exec_path(&session), Some(&token), proto)
        .await
        .unwrap();
    let mut seen = String::new();
    // The shell itself outlasts session_timeout before it answers.
    send_input(&mut ws, proto, b"sleep 3; echo al''ive\r").await;
    read_until(&mut ws, proto, "alive", &mut seen).await;
    assert!(session.connected());
    session.close().await;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(msg)) = ws.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the terminal stayed open after the job ended");
    eventually("the client to be detached", || !session.connected()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_is_private_kept_and_names_the_advertised_host() {
    let dir = tempfile::tempdir().unwrap();
    let settings = SessionServerSettings {
        listen_address: "127.0.0.1:0".into(),
        advertise_address: Some("runner.example.test:8093".into()),
        session_timeout: HOUR,
        cert_dir: dir.path().to_path_buf(),
    };
    let first = SessionServer::start(settings.clone()).await.unwrap();
    let session = first.create_session();
    assert!(
        session
            .info()
            .url
            .starts_with("https://runner.example.test:8093/session/"),
        "{}",
        session.info().url
    );
    assert_eq!(session.info().certificate, first.certificate_pem());
    let pem = first.certificate_pem().to_string();
    drop(session);
    drop(first);
    let (crt, key) = oxrunner_session::cert::paths(dir.path(), "runner.example.test");
    for f in [&crt, &key] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    assert!(std::fs::read_to_string(&key).unwrap().contains("PRIVATE KEY"));
    let second = SessionServer::start(settings).await.unwrap();
    assert_eq!(
        second.certificate_pem(),
        pem,
        "a restart keeps the certificate GitLab knows"
    );

    let url = SessionServer::start(SessionServerSettings {
        listen_address: "127.0.0.1:0".into(),
        advertise_address: Some("https://runner.example.test:8093".into()),
        session_timeout: HOUR,
        cert_dir: dir.path().to_path_buf(),
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(
        url.contains("advertise_address") && url.contains("hint:"),
        "{url}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hammering_leaves_the_server_and_the_session_working() {
    let dir = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), HOUR).await;
    let session = srv.create_session();
    session.offer(shell_terminal(project.path(), "99"));
    let token = session.info().authorization.clone();
    let path = exec_path(&session);

    // Wrong tokens, in parallel.
    let guesses: Vec<String> = (0..40).map(|i| format!("{token:.10}{i}")).collect();
    let mut refused = Vec::new();
    for guess in &guesses {
        refused.push(connect(&srv, &path, Some(guess), "terminal.gitlab.com"));
    }
    for r in futures::future::join_all(refused).await {
        assert_eq!(r.err(), Some(401));
    }

    // Malformed frames are dropped without ending the terminal.
    let proto = "base64.channel.k8s.io";
    let mut ws = connect(&srv, &path, Some(&token), proto).await.unwrap();
    for bad in ["0%%%not-base64", "4e30K", "4", "9aGVsbG8=", ""] {
        ws.send(Message::Text(bad.into())).await.unwrap();
    }
    ws.send(Message::Binary(vec![0xff; 300].into())).await.unwrap();
    let mut seen = String::new();
    send_input(&mut ws, proto, b"echo still''-alive\r").await;
    read_until(&mut ws, proto, "still-alive", &mut seen).await;

    // An oversized message ends that connection only.
    ws.send(Message::Binary(vec![b'x'; 2 * 1024 * 1024].into()))
        .await
        .ok();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "an oversized message did not end the connection");
    eventually("the client to be detached", || !session.connected()).await;

    // The session takes a new client and its shell works.
    let proto = "terminal.gitlab.com";
    let mut ws = connect(&srv, &path, Some(&token), proto).await.unwrap();
    let mut seen = String::new();
    send_input(&mut ws, proto, b"printf 'J<%s>\\n' \"$CI_JOB_ID\"\r").await;
    read_until(&mut ws, proto, "J<99>", &mut seen).await;
    assert_eq!(plain_request(&srv, "GET", "/nothing", None).await, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_user_the_terminal_runs_as_the_job_user() {
    use oxrunner_core::{Executor, ShellExecutor, Variable, Variables};
    if !crate::support::root_tests_can_run(
        "the --user terminal test",
        &["useradd", "userdel", "setpriv", "setsid"],
    ) {
        return;
    }
    let user = crate::support::TempUser::create("term");
    let dir = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), HOUR).await;
    let session = srv.create_session();
    let mut vars = Variables::new();
    vars.push(Variable::new("CI_PROJECT_DIR", project.path().to_string_lossy()));
    vars.push(Variable::new("CI_JOB_ID", "31"));
    let mut shell = ShellExecutor::new()
        .with_login_shell(false)
        .with_user(Some(user.name.clone()));
    shell.job_variables(&vars);
    session.offer(shell.terminal().unwrap());
    let token = session.info().authorization.clone();
    let proto = "terminal.gitlab.com";
    let mut ws = connect(&srv, &exec_path(&session), Some(&token), proto)
        .await
        .unwrap();
    let mut seen = String::new();
    send_input(
        &mut ws,
        proto,
        b"printf 'U<%s>\\n' \"$(id -un)\"; printf 'J<%s>\\n' \"$CI_JOB_ID\"\r",
    )
    .await;
    read_until(&mut ws, proto, &format!("U<{}>", user.name), &mut seen).await;
    read_until(&mut ws, proto, "J<31>", &mut seen).await;
    ws.close(None).await.unwrap();
    // The shell is gone before the user is removed.
    tokio::time::timeout(Duration::from_secs(30), session.disconnected())
        .await
        .unwrap();
    drop(session);
}

/// The job's cleanup comes right after `close`: by then the terminal's shell must be gone, even one that ignores
/// the hangup and has to be killed after the grace period.
#[tokio::test(flavor = "multi_thread")]
async fn closing_the_session_returns_once_the_shell_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), HOUR).await;
    let session = srv.create_session();
    session.offer(shell_terminal(project.path(), "1"));
    let token = session.info().authorization.clone();
    let proto = "terminal.gitlab.com";
    let mut ws = connect(&srv, &exec_path(&session), Some(&token), proto)
        .await
        .unwrap();
    let mut seen = String::new();
    send_input(&mut ws, proto, b"trap '' HUP; echo P''ID-$$-E''ND\r").await;
    read_until(&mut ws, proto, "-END", &mut seen).await;
    let pid: u32 = seen
        .rsplit("PID-")
        .next()
        .and_then(|rest| rest.split("-END").next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    oxrunner_core::TerminalSession::close(&session).await;
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the terminal's shell (pid {pid}) was still there when close returned"
    );
}

/// A large paste (hundreds of KiB in one message, as a browser sends it) reaches the shell and the terminal stays.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_paste_does_not_end_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), HOUR).await;
    let session = srv.create_session();
    session.offer(shell_terminal(project.path(), "1"));
    let token = session.info().authorization.clone();
    let proto = "terminal.gitlab.com";
    let mut ws = connect(&srv, &exec_path(&session), Some(&token), proto)
        .await
        .unwrap();
    // A shell comment of 300 KiB, then a command.
    let mut paste = b"# ".to_vec();
    paste.extend(std::iter::repeat_n(b'x', 300 * 1024));
    paste.extend_from_slice(b"\recho pa''sted\r");
    send_input(&mut ws, proto, &paste).await;
    let mut seen = String::new();
    read_until(&mut ws, proto, "pasted\r", &mut seen).await;
}

/// gitlab-runner takes an `advertise_address` without a port (warning) and names `listen_address`'s host in the
/// certificate; the session URL is the advertised address as written.
#[tokio::test(flavor = "multi_thread")]
async fn advertise_address_without_a_port_falls_back_like_gitlab_runner() {
    let dir = tempfile::tempdir().unwrap();
    let settings = SessionServerSettings {
        listen_address: "127.0.0.1:0".into(),
        advertise_address: Some("127.0.0.1".into()),
        session_timeout: HOUR,
        cert_dir: dir.path().to_path_buf(),
    };
    let srv = SessionServer::start(settings).await.unwrap();
    let session = srv.create_session();
    assert!(
        session.info().url.starts_with("https://127.0.0.1/session/"),
        "{}",
        session.info().url
    );
    assert!(oxrunner_session::cert::paths(dir.path(), "127.0.0.1").0.exists());
}
