//! The HTTP edge: the WebSocket endpoint (RFC 7395 §3.1 subprotocol negotiation, D1, D18,
//! D19), the admission checks (draining, Origin, session limits), XEP-0156 host-meta, and the
//! hand-off of each upgraded socket to a tracked [`crate::session`] task.
//!
//! This module decides whether an HTTP request becomes a session; it never looks at XML.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use crate::client_addr::{self, OriginDecision};
use crate::control::{Control, LimitExceeded};
use crate::session::{self, SessionContext};

/// The WebSocket subprotocol of RFC 7395.
pub const SUBPROTOCOL: &str = "xmpp";

/// Size of the WebSocket read buffer per connection (tungstenite's default is 128 KiB).
const WS_READ_BUFFER_BYTES: usize = 4 * 1024;
/// Write buffer target per connection. Sending a message always flushes it at once; messages
/// relayed from one upstream read are queued and flushed together, up to this size per write
/// (0 would make every queued message its own write, one syscall per stanza).
const WS_WRITE_BUFFER_BYTES: usize = 4 * 1024;
/// Room in the write buffer beyond the target and the largest element: a relayed element grows
/// by the namespace declarations inherited from the stream header (at most the splitter's header
/// limit, 8 KiB), plus frame headers, a pong and a Close frame.
const WS_WRITE_SLACK_BYTES: usize = 16 * 1024;

/// The most a WebSocket may hold unsent: the write target, one largest element, and the slack.
/// Without a maximum, pongs to a client that sends pings but never reads would pile up without
/// bound (tungstenite's default is unlimited).
pub fn max_write_buffer_bytes(largest_element: usize) -> usize {
    WS_WRITE_BUFFER_BYTES + largest_element + WS_WRITE_SLACK_BYTES
}

/// What the handlers know about the TCP peer.
#[derive(Debug, Clone, Copy)]
pub struct PeerInfo {
    /// The TCP peer (a proxy, when behind one).
    pub addr: SocketAddr,
    /// Whether the listener terminated TLS itself.
    pub secure: bool,
}

/// State shared by the HTTP handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    control: Arc<Control>,
    next_session_id: Arc<AtomicU64>,
}

impl AppState {
    /// Wraps the control plane.
    pub fn new(control: Arc<Control>) -> AppState {
        AppState { control, next_session_id: Arc::new(AtomicU64::new(1)) }
    }
}

/// The router for the public listener: the WebSocket path with and without a trailing slash
/// (D18; the root path `/` is its own trailing-slash form), and the XEP-0156 documents, whose
/// paths the configuration's `UrlPath` keeps apart from the WebSocket path.
pub fn router(state: AppState) -> Router {
    let path = state.control.current().config.listener.path.as_str().to_string();
    let [xrd, json] = crate::config::HOST_META_PATHS;
    let mut router = Router::new().route(&path, any(websocket_endpoint));
    if path != "/" {
        router = router.route(&format!("{path}/"), any(websocket_endpoint));
    }
    router.route(xrd, get(host_meta_xrd)).route(json, get(host_meta_json)).with_state(state)
}

/// True when any `Sec-WebSocket-Protocol` header line lists `xmpp` (case-sensitive, RFC 6455 §4.1).
fn offers_xmpp(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim() == SUBPROTOCOL)
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

async fn websocket_endpoint(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let gateway = state.control.current();
    let metrics = &gateway.metrics;
    let reject = |reason: &str| metrics.handshakes_rejected.with_label_values(&[reason]).inc();
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let is_upgrade = headers
                .get(header::UPGRADE)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
            if !is_upgrade {
                // D19: a person opening the URL learns what it is.
                reject("not-websocket");
                return (
                    StatusCode::UPGRADE_REQUIRED,
                    [(header::UPGRADE, "websocket"), (header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "This is an XMPP over WebSocket endpoint (RFC 7395): connect with a WebSocket client using the 'xmpp' subprotocol.\n",
                )
                    .into_response();
            }
            reject("bad-handshake");
            return rejection.into_response();
        }
    };
    if state.control.is_draining() {
        reject("draining");
        return plain(StatusCode::SERVICE_UNAVAILABLE, "This gateway is shutting down; connect again.\n");
    }
    let listener = &gateway.config.listener;
    match client_addr::check_origin(&headers, &listener.allowed_origins, listener.allow_missing_origin) {
        OriginDecision::Allowed => {}
        OriginDecision::NotListed => {
            reject("origin-not-allowed");
            return plain(StatusCode::FORBIDDEN, "This page's origin may not use this XMPP gateway.\n");
        }
        OriginDecision::Missing => {
            reject("origin-missing");
            return plain(StatusCode::FORBIDDEN, "This XMPP gateway requires an Origin header.\n");
        }
    }
    if !offers_xmpp(&headers) {
        // D1: 400, never a 101 without the subprotocol.
        reject("no-subprotocol");
        return plain(
            StatusCode::BAD_REQUEST,
            "RFC 7395 requires the 'xmpp' WebSocket subprotocol: the request has no 'Sec-WebSocket-Protocol: xmpp' header.\n",
        );
    }
    let client = client_addr::client_address(peer.addr, &headers, &gateway.trusted_proxies);
    let limits = &gateway.config.limits;
    let permit =
        match state.control.limiter.try_acquire(client.ip, limits.max_sessions, limits.max_sessions_per_address) {
            Ok(permit) => permit,
            Err(LimitExceeded::Total) => {
                reject("limit-total");
                return plain(StatusCode::SERVICE_UNAVAILABLE, "This gateway has reached its session limit.\n");
            }
            Err(LimitExceeded::PerAddress) => {
                reject("limit-per-address");
                return plain(StatusCode::TOO_MANY_REQUESTS, "Too many sessions from this address.\n");
            }
        };
    let context = SessionContext {
        client,
        id: state.next_session_id.fetch_add(1, Ordering::Relaxed),
        drain: state.control.drain.clone(),
        permit,
    };
    // Each session applies its upstream's element limit; the WebSocket layer takes the largest.
    let max_message = gateway.config.largest_element_limit();
    // Counted as a session from here, so a drain that starts before the upgrade completes still
    // waits for it.
    let tracked = state.control.sessions.token();
    upgrade
        .protocols([SUBPROTOCOL])
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(WS_WRITE_BUFFER_BYTES)
        .max_write_buffer_size(max_write_buffer_bytes(max_message))
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            session::run(socket, gateway, context).await;
            drop(tracked);
        })
}

/// The host-meta link for this request, if one may be served: host-meta configured, the `Host`
/// is one of its domains, and the request arrived over HTTPS (directly or via a trusted proxy).
fn host_meta_link(state: &AppState, peer: PeerInfo, headers: &HeaderMap) -> Option<String> {
    let gateway = state.control.current();
    let config = &gateway.config.host_meta;
    let url = config.websocket_url.as_ref()?.as_str().to_string();
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let host =
        host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
    let host = crate::domain::normalize(host).ok()?;
    let served = config.domains.iter().any(|domain| domain.as_str() == host);
    let secure = peer.secure || client_addr::forwarded_https(peer.addr, headers, &gateway.trusted_proxies);
    (served && secure).then_some(url)
}

async fn host_meta_xrd(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    headers: HeaderMap,
) -> Response {
    let Some(url) = host_meta_link(&state, peer, &headers) else {
        return plain(StatusCode::NOT_FOUND, "No host-meta here.\n");
    };
    let body = crate::xml::framing::host_meta_xrd(&url);
    ([(header::CONTENT_TYPE, "application/xrd+xml"), (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], body).into_response()
}

async fn host_meta_json(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    headers: HeaderMap,
) -> Response {
    let Some(url) = host_meta_link(&state, peer, &headers) else {
        return plain(StatusCode::NOT_FOUND, "No host-meta here.\n");
    };
    let body = serde_json::json!({ "links": [{ "rel": "urn:xmpp:alt-connections:websocket", "href": url }] });
    ([(header::CONTENT_TYPE, "application/json"), (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], body.to_string())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn subprotocol_offer_is_found_in_lists_and_repeated_lines() {
        let mut headers = HeaderMap::new();
        assert!(!offers_xmpp(&headers));
        headers.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat, xmpp"));
        assert!(offers_xmpp(&headers));
        let mut headers = HeaderMap::new();
        headers.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat"));
        headers.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("xmpp"));
        assert!(offers_xmpp(&headers));
        let mut headers = HeaderMap::new();
        headers.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("mqtt, xmpp-ish, XMPP"));
        assert!(!offers_xmpp(&headers));
    }
}
