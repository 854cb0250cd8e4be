//! `[session_server]`: starts the web terminal server with the service and says in each runner's features whether
//! its jobs get a terminal. A server that cannot start is an error in the log, not the end of the service: jobs
//! then run without a terminal, and GitLab shows no "Debug" button because `session`/`terminal` stay false.

use std::path::Path;
use std::sync::Arc;

use oxrunner_api::RunnerInfo;
use oxrunner_config::Config;
use oxrunner_session::{SessionServer, SessionServerSettings};
use tracing::{error, info};

/// The server for `config`, or `None` when it has no `listen_address` or cannot start.
pub(super) async fn start(config: &Config, config_dir: &Path) -> Option<Arc<SessionServer>> {
    let section = config.session_server.as_ref()?;
    let listen = section
        .listen_address
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())?;
    let settings = SessionServerSettings {
        listen_address: listen.to_owned(),
        advertise_address: section.advertise_address.clone(),
        session_timeout: config.session_timeout(),
        cert_dir: config_dir.to_path_buf(),
    };
    match SessionServer::start(settings).await {
        Ok(server) => {
            info!(address = %server.local_addr(), "session server listening");
            Some(Arc::new(server))
        }
        Err(err) => {
            error!("the interactive web terminal is off: {err}");
            None
        }
    }
}

/// `session` and `terminal` are advertised only when this runner's jobs get a terminal.
pub(super) fn advertise(info: &mut RunnerInfo, terminal: bool) {
    info.features.session = terminal;
    info.features.terminal = terminal;
}
