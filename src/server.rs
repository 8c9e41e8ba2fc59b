//! The HTTP edge: the WebSocket endpoint (RFC 7395 §3.1 subprotocol negotiation, D1, D18,
//! D19) over HTTP/1.1 (RFC 6455 Upgrade) and HTTP/2 (RFC 8441 extended CONNECT, WS-12) alike, the
//! admission checks (draining, Origin, session limits), XEP-0156 host-meta, and the hand-off of
//! each upgraded socket to a tracked [`crate::session`] task.
//!
//! This module decides whether an HTTP request becomes a session; it never looks at XML.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use tracing::debug;

use crate::client_addr::{self, OriginDecision};
use crate::control::{Control, LimitExceeded};
use crate::listener::{Http2Connection, Http2Session};
use crate::session::{self, Gateway, SessionContext};

/// The WebSocket subprotocol of RFC 7395.
pub const SUBPROTOCOL: &str = "xmpp";

/// The default `limits.websocket_read_buffer_bytes`: the WebSocket read buffer per connection,
/// and the most one socket read takes (tungstenite's default is 128 KiB). tungstenite keeps it
/// allocated while the connection is idle, so it is most of what an idle session's client side
/// holds: 1 KiB rather than 4 cuts 3 KiB per idle session, for more reads when a client sends
/// more than that at once (a message larger than this is read in pieces of this size;
/// docs/PERFORMANCE.md).
pub const DEFAULT_WS_READ_BUFFER_BYTES: usize = 1024;
/// Write buffer target per connection. Sending a message always flushes it at once; messages
/// relayed from one upstream read are queued and flushed together, up to this size per write
/// (0 would make every queued message its own write, one syscall per stanza).
pub const WS_WRITE_BUFFER_BYTES: usize = 4 * 1024;
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
    pub(crate) control: Arc<Control>,
    pub(crate) next_session_id: Arc<AtomicU64>,
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
    let config = &state.control.current().config;
    let path = config.listener.path.as_str().to_string();
    let [xrd, json] = crate::config::HOST_META_PATHS;
    let mut router = Router::new().route(&path, any(websocket_endpoint));
    if path != "/" {
        router = router.route(&format!("{path}/"), any(websocket_endpoint));
    }
    if config.bosh.enabled {
        router = router.route(config.bosh.path.as_str(), any(crate::bosh::endpoint));
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

/// Whether a request that is not a valid WebSocket handshake was meant as one: an HTTP/1.1
/// `Upgrade: websocket`, or an HTTP/2 CONNECT (RFC 8441). The others get D19's answer.
fn asks_for_websocket(parts: &Parts) -> bool {
    if parts.version == Version::HTTP_2 {
        return parts.method == Method::CONNECT;
    }
    parts
        .headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// D19: a person opening the URL learns what it is. The same 426 on both HTTP versions; HTTP/2
/// has no `Upgrade` header (RFC 9113 §8.2.2), so it is sent on HTTP/1.1 only.
fn not_websocket(version: Version) -> Response {
    const TEXT: &str = "This is an XMPP over WebSocket endpoint (RFC 7395): connect with a WebSocket client using the 'xmpp' subprotocol.\n";
    let mut response =
        (StatusCode::UPGRADE_REQUIRED, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], TEXT).into_response();
    if version != Version::HTTP_2 {
        response.headers_mut().insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
    }
    response
}

/// The `http_version` label of `xmppgw_websocket_upgrades_total`.
fn version_label(version: Version) -> &'static str {
    if version == Version::HTTP_2 {
        "2"
    } else {
        "1.1"
    }
}

/// What an admitted handshake holds for its session's life.
struct Admitted {
    client: client_addr::ClientAddr,
    permit: crate::control::AddressPermit,
    /// On HTTP/2: the session's share of its connection (a descriptor slot of its own).
    http2: Option<Http2Session>,
}

/// Why a well-formed handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Draining (503).
    Draining,
    /// The page's Origin is not listed (403).
    OriginNotAllowed,
    /// No Origin, and `listener.allow_missing_origin` is off (403).
    OriginMissing,
    /// D1: no `xmpp` subprotocol offered (400).
    NoSubprotocol,
    /// `limits.max_sessions` (503).
    SessionsTotal,
    /// `limits.max_sessions_per_address` (429).
    SessionsPerAddress,
    /// Every public connection slot the descriptor limit allows is in use (503; a session on
    /// HTTP/2, or a BOSH session).
    Descriptors,
}

impl Refused {
    /// The `handshakes_rejected_total` label, the status and the one line the client gets.
    pub(crate) fn answer(self) -> (&'static str, StatusCode, &'static str) {
        match self {
            Refused::Draining => {
                ("draining", StatusCode::SERVICE_UNAVAILABLE, "This gateway is shutting down; connect again.\n")
            }
            Refused::OriginNotAllowed => {
                ("origin-not-allowed", StatusCode::FORBIDDEN, "This page's origin may not use this XMPP gateway.\n")
            }
            Refused::OriginMissing => {
                ("origin-missing", StatusCode::FORBIDDEN, "This XMPP gateway requires an Origin header.\n")
            }
            Refused::NoSubprotocol => (
                "no-subprotocol",
                StatusCode::BAD_REQUEST,
                "RFC 7395 requires the 'xmpp' WebSocket subprotocol: the request has no 'Sec-WebSocket-Protocol: xmpp' header.\n",
            ),
            Refused::SessionsTotal => {
                ("limit-total", StatusCode::SERVICE_UNAVAILABLE, "This gateway has reached its session limit.\n")
            }
            Refused::SessionsPerAddress => {
                ("limit-per-address", StatusCode::TOO_MANY_REQUESTS, "Too many sessions from this address.\n")
            }
            Refused::Descriptors => {
                ("limit-descriptors", StatusCode::SERVICE_UNAVAILABLE, "This gateway has no room for another connection.\n")
            }
        }
    }
}

/// The admission checks of a well-formed handshake, in order: draining, Origin, the `xmpp`
/// subprotocol (D1), the session limits, and on HTTP/2 a descriptor slot for the session.
fn admit(state: &AppState, gateway: &Gateway, peer: PeerInfo, parts: &mut Parts) -> Result<Admitted, Refused> {
    if state.control.is_draining() {
        return Err(Refused::Draining);
    }
    let listener = &gateway.config.listener;
    match client_addr::check_origin(&parts.headers, &listener.allowed_origins, listener.allow_missing_origin) {
        OriginDecision::Allowed => {}
        OriginDecision::NotListed => return Err(Refused::OriginNotAllowed),
        OriginDecision::Missing => return Err(Refused::OriginMissing),
    }
    if !offers_xmpp(&parts.headers) {
        // D1: 400, never a 101 without the subprotocol.
        return Err(Refused::NoSubprotocol);
    }
    let client = client_addr::client_address(peer.addr, &parts.headers, &gateway.trusted_proxies);
    let limits = &gateway.config.limits;
    let permit =
        state.control.limiter.try_acquire(client.ip, limits.max_sessions, limits.max_sessions_per_address).map_err(
            |exceeded| match exceeded {
                LimitExceeded::Total => Refused::SessionsTotal,
                LimitExceeded::PerAddress => Refused::SessionsPerAddress,
            },
        )?;
    // On HTTP/1.1 the connection's descriptor slot moves into its one session; a session on an
    // HTTP/2 connection takes one of its own.
    let http2 = match parts.extensions.remove::<Http2Connection>() {
        None => None,
        Some(connection) => Some(connection.start_session().ok_or(Refused::Descriptors)?),
    };
    Ok(Admitted { client, permit, http2 })
}

async fn websocket_endpoint(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    request: Request,
) -> Response {
    let gateway = state.control.current();
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let (reason, response) = if asks_for_websocket(&parts) {
                ("bad-handshake", rejection.into_response())
            } else {
                ("not-websocket", not_websocket(parts.version))
            };
            gateway.metrics.handshakes_rejected.with_label_values(&[reason]).inc();
            return response;
        }
    };
    let Admitted { client, permit, http2 } = match admit(&state, &gateway, peer, &mut parts) {
        Ok(admitted) => admitted,
        Err(refused) => {
            let (reason, status, text) = refused.answer();
            gateway.metrics.handshakes_rejected.with_label_values(&[reason]).inc();
            return plain(status, text);
        }
    };
    let http_version = version_label(parts.version);
    gateway.metrics.websocket_upgrades.with_label_values(&[http_version]).inc();
    debug!(client = %client.ip, http_version, "websocket handshake accepted");
    let context = SessionContext {
        client,
        id: state.next_session_id.fetch_add(1, Ordering::Relaxed),
        drain: state.control.drain.clone(),
        permit,
        descriptors: state.control.descriptors.clone(),
    };
    // Each session applies its upstream's element limit; the WebSocket layer takes the largest.
    let max_message = gateway.config.largest_element_limit();
    // Counted as a session from here, so a drain that starts before the upgrade completes still
    // waits for it.
    let tracked = state.control.sessions.token();
    upgrade
        .protocols([SUBPROTOCOL])
        .read_buffer_size(gateway.config.limits.websocket_read_buffer_bytes)
        .write_buffer_size(WS_WRITE_BUFFER_BYTES)
        .max_write_buffer_size(max_write_buffer_bytes(max_message))
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            // Not boxed: a box saves copies of the 3 KiB future as the task is spawned and
            // ends, but an idle session then holds two allocations, the task's cache-aligned
            // one among them: about 250 bytes more per session (RSS at 4,000 idle sessions).
            session::run(socket, gateway, context).await;
            if let Some(share) = http2 {
                share.end().await;
            }
            drop(tracked);
        })
}

/// The host-meta links (rel, href) for this request, if they may be served: host-meta
/// configured (a WebSocket or a BOSH URL), the `Host` is one of its domains, and the request
/// arrived over HTTPS (directly or via a trusted proxy).
fn host_meta_link(state: &AppState, peer: PeerInfo, headers: &HeaderMap) -> Option<Vec<(&'static str, String)>> {
    let gateway = state.control.current();
    let config = &gateway.config.host_meta;
    let mut links = Vec::new();
    if let Some(url) = &config.websocket_url {
        links.push(("urn:xmpp:alt-connections:websocket", url.as_str().to_string()));
    }
    if let Some(url) = config.bosh_url.as_ref().filter(|_| gateway.config.bosh.enabled) {
        links.push(("urn:xmpp:alt-connections:xbosh", url.as_str().to_string()));
    }
    if links.is_empty() {
        return None;
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let host =
        host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
    let host = crate::domain::normalize(host).ok()?;
    let served = config.domains.iter().any(|domain| domain.as_str() == host);
    let secure = peer.secure || client_addr::forwarded_https(peer.addr, headers, &gateway.trusted_proxies);
    (served && secure).then_some(links)
}

async fn host_meta_xrd(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    headers: HeaderMap,
) -> Response {
    let Some(links) = host_meta_link(&state, peer, &headers) else {
        return plain(StatusCode::NOT_FOUND, "No host-meta here.\n");
    };
    let links: Vec<(&str, &str)> = links.iter().map(|(rel, href)| (*rel, href.as_str())).collect();
    let body = crate::xml::framing::host_meta_xrd(&links);
    ([(header::CONTENT_TYPE, "application/xrd+xml"), (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], body).into_response()
}

async fn host_meta_json(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    headers: HeaderMap,
) -> Response {
    let Some(links) = host_meta_link(&state, peer, &headers) else {
        return plain(StatusCode::NOT_FOUND, "No host-meta here.\n");
    };
    let links: Vec<_> = links.iter().map(|(rel, href)| serde_json::json!({ "rel": rel, "href": href })).collect();
    let body = serde_json::json!({ "links": links });
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
