//! Object storage on a listener of its own (`FakeOptions::object_storage_tls`): on GitLab.com and most
//! self-managed instances the pre-signed URLs of a `direct_download` redirect point at another host (S3, GCS, a
//! MinIO) with its own certificate chain, which a runner must keep apart from GitLab's. The store answers only
//! object GETs, and its requests go to the same request log as GitLab's.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::state::Shared;
use crate::tls::TlsMaterial;
use crate::{FakeError, api, faults, http};

/// The store's listener, bound before the fake's state exists (the state names the store's URL).
pub(crate) struct Bound {
    listener: std::net::TcpListener,
    tls: TlsMaterial,
    pub(crate) url: String,
}

/// A running store; dropping it stops the listener.
pub(crate) struct Running {
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.shutdown();
        self.task.abort();
    }
}

/// Binds 127.0.0.1 on a free port: GitLab itself is `localhost`, so the store is another host name.
pub(crate) fn bind(tls: &TlsMaterial) -> Result<Bound, FakeError> {
    let want = SocketAddr::from(([127, 0, 0, 1], 0));
    let bind_err = |source| FakeError::Bind {
        addr: want.to_string(),
        source,
    };
    let listener = std::net::TcpListener::bind(want).map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    Ok(Bound {
        listener,
        tls: tls.clone(),
        url: format!("https://{addr}"),
    })
}

pub(crate) async fn serve(bound: Bound, shared: Arc<Shared>) -> Result<Running, FakeError> {
    let app = Router::new()
        .route(
            "/object-storage/artifacts/{id}/{filename}",
            get(api::artifacts::object_storage),
        )
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            faults::fault_layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            http::log_layer,
        ))
        .with_state(shared);
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        bound.tls.cert_pem.into_bytes(),
        bound.tls.key_pem.into_bytes(),
    )
    .await
    .map_err(|source| FakeError::Tls { source })?;
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(bound.listener, config)
        .map_err(|source| FakeError::Bind {
            addr: bound.url.clone(),
            source,
        })?
        .handle(handle.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = server
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
        {
            tracing::error!(error = %e, "fake object storage stopped");
        }
    });
    Ok(Running { handle, task })
}
