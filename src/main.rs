//! The `xmpp-ws-gateway` binary: parse arguments, load the configuration, start logging, serve.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use xmpp_ws_gateway::config::{Config, LogFormat};
use xmpp_ws_gateway::listener::descriptors::{self, Raised};
use xmpp_ws_gateway::run::{build_gateway, Bound};
use xmpp_ws_gateway::upstream::SystemRoots;
#[cfg(unix)]
use xmpp_ws_gateway::{control::Control, run};

/// RFC 7395 XMPP-over-WebSocket gateway to RFC 6120 TCP XMPP servers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML). Values can be overridden by XMPPGW_SECTION__KEY variables.
    #[arg(long, value_name = "PATH", default_value = "config/gateway.toml")]
    config: PathBuf,
    /// Validate the configuration file and exit: 0 when valid, 2 with a message when not.
    #[arg(long, value_name = "PATH")]
    check_config: Option<PathBuf>,
}

fn load(path: &std::path::Path) -> Result<Config, String> {
    let env = std::env::vars().collect();
    Config::load(path, env).map_err(|error| format!("invalid configuration {}: {error}", path.display()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.check_config {
        return match load(path) {
            Ok(_) => {
                println!("{}: configuration is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("{message}");
                ExitCode::from(2)
            }
        };
    }
    let config = match load(&args.config) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log.level.as_str(), config.log.format);
    match descriptors::raise_descriptor_limit() {
        Raised::From { was, now } => tracing::info!(was, now, "descriptor limit raised to the hard limit"),
        Raised::Refused(was) => tracing::warn!(limit = was, "cannot raise the descriptor limit to the hard limit"),
        Raised::AlreadyAtMost(_) => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let gateway = match build_gateway(config, &SystemRoots::load()) {
            Ok(gateway) => gateway,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        let bound = match Bound::bind(gateway).await {
            Ok(bound) => bound,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        #[cfg(unix)]
        spawn_reload_on_sighup(bound.control().clone(), args.config.clone());
        match bound.serve(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "server failed");
                ExitCode::FAILURE
            }
        }
    });
    // Whatever is still running after the grace period (a session stuck in a send, a name
    // lookup on a blocking thread) must not hold the exit up.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    code
}

/// How long the runtime may take to stop its tasks and blocking threads at exit.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// Dependencies that log whole WebSocket messages or HTTP bodies (and so SASL payloads) at
/// trace level. Their trace events are dropped whatever the configured level: credentials never
/// reach the log.
const PAYLOAD_LOGGING_TARGETS: [&str; 4] = ["tungstenite", "tokio_tungstenite", "hyper", "hyper_util"];

fn init_logging(level: &str, format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let no_payloads = tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() != tracing::Level::TRACE
            || !PAYLOAD_LOGGING_TARGETS.iter().any(|target| {
                meta.target().strip_prefix(target).is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
            })
    });
    let output = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
    };
    tracing_subscriber::registry().with(EnvFilter::new(level)).with(output.with_filter(no_payloads)).init();
}

/// SIGHUP reloads the configuration file for new sessions (allowlists, limits, certificates).
#[cfg(unix)]
fn spawn_reload_on_sighup(control: std::sync::Arc<Control>, path: PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload disabled");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let env = std::env::vars().collect();
            match run::reload(&control, &path, env, &SystemRoots::load()) {
                Ok(()) => tracing::info!(config = %path.display(), "configuration reloaded"),
                Err(error) => {
                    tracing::error!(config = %path.display(), %error, "reload failed; keeping the running configuration")
                }
            }
        }
    });
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            let _ = interrupt.await;
            return;
        };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutdown signal received");
}
