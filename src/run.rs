//! Wiring: builds the shared state from a configuration, binds the listener and serves until
//! a shutdown signal. Used by `main` and by integration tests; holds no global state.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::info;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::server::{self, AppState};
use crate::session::Gateway;
use crate::upstream::{SystemRoots, UpstreamDirectory, UpstreamSetupError};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A CA file could not be loaded, or the DNS resolver could not be configured.
    #[error(transparent)]
    Upstream(#[from] UpstreamSetupError),
    /// The listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The configured address.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The shared state for a configuration: metrics, upstream directory with the resolver and
/// TLS configurations.
pub fn build_gateway(config: Config, roots: &SystemRoots) -> Result<Arc<Gateway>, StartError> {
    let upstreams = UpstreamDirectory::from_config(&config, roots)?;
    Ok(Arc::new(Gateway { config, metrics: Metrics::new(), upstreams }))
}

/// A bound, not yet serving gateway.
#[derive(Debug)]
pub struct Bound {
    listener: TcpListener,
    gateway: Arc<Gateway>,
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
}

impl Bound {
    /// Binds the WebSocket listener of `gateway`'s configuration.
    pub async fn bind(gateway: Arc<Gateway>) -> Result<Bound, StartError> {
        let address = gateway.config.listener.address.clone();
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| StartError::Bind { address: address.clone(), source })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind { address, source })?;
        Ok(Bound { listener, gateway, local_addr })
    }

    /// The `ws://` URL clients use.
    pub fn url(&self) -> String {
        format!("ws://{}{}", self.local_addr, self.gateway.config.listener.path)
    }

    /// The shared state.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        info!(url = %self.url(), "websocket listener ready");
        let app =
            server::router(AppState::new(self.gateway.clone())).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await
    }
}
