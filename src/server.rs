//! The HTTP edge: the WebSocket endpoint (RFC 7395 §3.1 subprotocol negotiation, D1, D18, D19)
//! and the hand-off of each upgraded socket to a [`crate::session`] task.
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
use axum::routing::any;
use axum::Router;

use crate::session::{self, Gateway};

/// The WebSocket subprotocol of RFC 7395.
pub const SUBPROTOCOL: &str = "xmpp";

/// Size of the WebSocket read buffer per connection (tungstenite's default is 128 KiB).
const WS_READ_BUFFER_BYTES: usize = 4 * 1024;
/// Size of the WebSocket write buffer target per connection.
const WS_WRITE_BUFFER_BYTES: usize = 0;

/// State shared by the HTTP handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    gateway: Arc<Gateway>,
    next_session_id: Arc<AtomicU64>,
}

impl AppState {
    /// Wraps the shared gateway state.
    pub fn new(gateway: Arc<Gateway>) -> AppState {
        AppState { gateway, next_session_id: Arc::new(AtomicU64::new(1)) }
    }
}

/// The router for the public listener: the WebSocket path with and without a trailing slash.
pub fn router(state: AppState) -> Router {
    let path = state.gateway.config.listener.path.clone();
    Router::new()
        .route(&path, any(websocket_endpoint))
        .route(&format!("{path}/"), any(websocket_endpoint))
        .with_state(state)
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let metrics = &state.gateway.metrics;
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let is_upgrade = headers
                .get(header::UPGRADE)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
            if !is_upgrade {
                // D19: a person opening the URL learns what it is.
                metrics.handshakes_rejected.with_label_values(&["not-websocket"]).inc();
                return (
                    StatusCode::UPGRADE_REQUIRED,
                    [(header::UPGRADE, "websocket"), (header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "This is an XMPP over WebSocket endpoint (RFC 7395): connect with a WebSocket client using the 'xmpp' subprotocol.\n",
                )
                    .into_response();
            }
            metrics.handshakes_rejected.with_label_values(&["bad-handshake"]).inc();
            return rejection.into_response();
        }
    };
    if !offers_xmpp(&headers) {
        // D1: 400, never a 101 without the subprotocol.
        metrics.handshakes_rejected.with_label_values(&["no-subprotocol"]).inc();
        return plain(
            StatusCode::BAD_REQUEST,
            "RFC 7395 requires the 'xmpp' WebSocket subprotocol: the request has no 'Sec-WebSocket-Protocol: xmpp' header.\n",
        );
    }
    let max_message = state.gateway.config.limits.max_element_bytes;
    let session_id = state.next_session_id.fetch_add(1, Ordering::Relaxed);
    let gateway = state.gateway.clone();
    upgrade
        .protocols([SUBPROTOCOL])
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(WS_WRITE_BUFFER_BYTES)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| session::run(socket, gateway, peer, session_id))
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
