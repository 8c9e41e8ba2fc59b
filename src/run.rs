//! Wiring: builds the shared state from a configuration, binds the listeners, serves until a
//! shutdown signal, drains, and reloads on request. Used by `main` and by integration tests;
//! holds no global state.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tracing::{info, warn};

use crate::config::{self, Config};
use crate::control::Control;
use crate::listener::{self, descriptors};
use crate::metrics::Metrics;
use crate::server::{self, AppState};
use crate::session::Gateway;
use crate::upstream::{SystemRoots, UpstreamDirectory, UpstreamSetupError};

/// Why the gateway could not start (or reload).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A CA file could not be loaded.
    #[error(transparent)]
    Upstream(#[from] UpstreamSetupError),
    /// The listener's own certificate could not be loaded.
    #[error(transparent)]
    ListenerTls(#[from] listener::ListenerTlsError),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

/// The shared state for a configuration, with fresh metrics: upstream directory with the
/// resolver and TLS configurations.
pub fn build_gateway(config: Config, roots: &SystemRoots) -> Result<Arc<Gateway>, StartError> {
    build_gateway_with_metrics(config, roots, Metrics::new())
}

/// The shared state for a configuration, reusing `metrics` (a reload keeps counting).
pub fn build_gateway_with_metrics(
    config: Config,
    roots: &SystemRoots,
    metrics: Metrics,
) -> Result<Arc<Gateway>, StartError> {
    let upstreams = UpstreamDirectory::from_config(&config, roots)?;
    let trusted_proxies = config.listener.trusted_proxies.iter().map(|cidr| cidr.0).collect();
    let listener_tls = match (&config.listener.tls_cert_file, &config.listener.tls_key_file) {
        (Some(cert), Some(key)) => Some(listener::server_config(cert, key, config.listener.http2)?),
        _ => None,
    };
    let settings = Arc::new(crate::session::core::Settings::from_config(&config));
    Ok(Arc::new(Gateway { config, settings, metrics, upstreams, trusted_proxies, listener_tls }))
}

/// Loads `path` again and swaps the state new sessions use (SIGHUP). Live sessions keep theirs.
/// Listener and admin addresses and the listener's TLS mode cannot change without a restart.
pub fn reload(
    control: &Control,
    path: &Path,
    env: HashMap<String, String>,
    roots: &SystemRoots,
) -> Result<(), StartError> {
    let config = Config::load(path, env)?;
    let current = control.current();
    let (old, mut config) = (&current.config, config);
    for (key, old, new) in [
        ("listener.address", old.listener.address.to_string(), config.listener.address.to_string()),
        ("listener.path", old.listener.path.to_string(), config.listener.path.to_string()),
        ("admin.address", old.admin.address.to_string(), config.admin.address.to_string()),
        ("bosh.path", old.bosh.path.to_string(), config.bosh.path.to_string()),
        ("bosh.enabled", old.bosh.enabled.to_string(), config.bosh.enabled.to_string()),
    ] {
        if old != new {
            warn!(key, old, new, "this setting needs a restart; keeping the old value");
        }
    }
    config.listener.address = old.listener.address;
    config.listener.path = old.listener.path.clone();
    config.admin.address = old.admin.address;
    config.bosh.path = old.bosh.path.clone();
    config.bosh.enabled = old.bosh.enabled;
    if config.listener.tls_cert_file.is_some() != current.listener_tls.is_some() {
        warn!("switching the listener between ws:// and wss:// needs a restart; keeping the old mode");
        config.listener.tls_cert_file = current.config.listener.tls_cert_file.clone();
        config.listener.tls_key_file = current.config.listener.tls_key_file.clone();
    }
    let gateway = build_gateway_with_metrics(config, roots, current.metrics.clone())?;
    control.replace(gateway);
    Ok(())
}

/// Bound, not yet serving listeners.
pub struct Bound {
    public: TcpListener,
    /// The public listener does the TLS handshake itself (`wss://`).
    secure: bool,
    admin: Option<TcpListener>,
    control: Arc<Control>,
    /// The public listener's address (useful with port 0).
    pub local_addr: SocketAddr,
    /// The admin listener's address, when enabled.
    pub admin_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound").field("local_addr", &self.local_addr).field("admin_addr", &self.admin_addr).finish()
    }
}

/// Connections the kernel completes and queues for a listener before it accepts them: room for
/// a burst of clients while every public connection slot is taken (the usual default, 128, is
/// soon full; the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 1024;

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let failed = |source| StartError::Bind { address: addr, source };
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(failed)?;
    #[cfg(unix)]
    socket.set_reuseaddr(true).map_err(failed)?;
    socket.bind(addr).map_err(failed)?;
    socket.listen(LISTEN_BACKLOG).map_err(failed)
}

impl Bound {
    /// Binds the public and admin listeners of `gateway`'s configuration.
    pub async fn bind(gateway: Arc<Gateway>) -> Result<Bound, StartError> {
        let config = gateway.config.clone();
        let secure = gateway.listener_tls.is_some();
        let budget = descriptors::DescriptorBudget::of_limit(descriptors::descriptor_limit());
        let control = Arc::new(Control::new(gateway, descriptors::DescriptorPools::new(budget)));
        let address = config.listener.address.0;
        let public = bind(address).await?;
        let local_addr = public.local_addr().map_err(|source| StartError::Bind { address, source })?;
        let (admin, admin_addr) = match config.admin.address.0 {
            None => (None, None),
            Some(address) => {
                let admin = bind(address).await?;
                let addr = admin.local_addr().ok();
                (Some(admin), addr)
            }
        };
        Ok(Bound { public, secure, admin, control, local_addr, admin_addr })
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.local_addr, self.control.current().config.listener.path)
    }

    /// The current shared state.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.control.current()
    }

    /// The control plane (drain, reload, limits).
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Serves until `shutdown` completes, then drains: stops accepting, `/readyz` turns 503,
    /// connections that have not upgraded are closed at once, every session is told to leave,
    /// and live sessions get up to the grace period, counted from the signal, to end. Returns
    /// then, whatever is still open.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let control = self.control.clone();
        let config = control.current().config.clone();
        let descriptor_limit = descriptors::descriptor_limit();
        let slots = control.descriptors.budget.slots;
        let wanted = config.limits.max_sessions.saturating_add(config.limits.max_pending_connections);
        if slots < wanted {
            warn!(
                descriptor_limit,
                public_connections = slots,
                wanted,
                "the descriptor limit (RLIMIT_NOFILE) allows fewer public connections than \
                 limits.max_sessions + limits.max_pending_connections; raise it (systemd: LimitNOFILE)"
            );
        }
        let admin_url = self.admin_addr.map(|addr| format!("http://{addr}")).unwrap_or_else(|| "disabled".into());
        info!(url = %self.url(), admin = %admin_url, public_connections = slots, "websocket listener ready");
        let drain = control.drain.clone();
        tokio::spawn(async move {
            shutdown.await;
            drain.cancel();
        });
        let admin_task = self.admin.map(|admin| {
            tokio::spawn(listener::serve_admin(admin, control.clone(), crate::admin::router(control.clone())))
        });
        let app = server::router(AppState::new(control.clone()));
        let slots = control.descriptors.slots.clone();
        listener::serve_public(self.public, self.secure, control.clone(), app, slots).await;
        // Draining has started: the grace period runs from now, whatever the connections do.
        let grace = control.current().config.shutdown.grace_period;
        let deadline = tokio::time::Instant::now() + grace;
        control.connections.close();
        control.sessions.close();
        info!(sessions = control.sessions.len(), grace_secs = grace.as_secs(), "draining");
        let everything = async {
            control.connections.wait().await;
            control.sessions.wait().await;
        };
        if tokio::time::timeout_at(deadline, everything).await.is_err() {
            warn!(sessions = control.sessions.len(), "grace period expired with sessions still open");
        } else {
            info!("all sessions ended");
        }
        if let Some(task) = admin_task {
            task.abort();
        }
        Ok(())
    }
}
