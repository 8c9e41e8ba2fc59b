//! The BOSH endpoint: one POST per request body, answered with one body (XEP-0124 §4), CORS
//! preflight (OPTIONS) for the configured origins, everything else refused. A body is
//! limited before it is read (its `Content-Length`, then a streaming limit and the handshake
//! timeout), parsed by [`crate::xml::bosh`], and either creates a session or goes to its
//! session by `sid`. Errors are answered as XEP-0124 §17 terminal conditions in an HTTP 200.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

use super::client::{BoshClient, Incoming};
use super::exchange::{Exchange, Params};
use super::{new_sid, version, Entry, LINGER};
use crate::client_addr::{self, OriginDecision};
use crate::config::BODY_OVERHEAD_BYTES;
use crate::control::LimitExceeded;
use crate::listener::{ConnectionLease, ConnectionPlace, Http2Connection};
use crate::server::{AppState, PeerInfo, Refused};
use crate::session::{self, Gateway, SessionContext};
use crate::xml::bosh::{self as wire, BodyLimits, BodyRequest};

/// Extra time a connection gets beyond a request's `wait` to carry its answer and the next request.
const CONNECTION_SLACK: Duration = Duration::from_secs(10);

/// An answer that is not a body: a status and one line.
fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

fn xml(body: String, origin: Option<&HeaderValue>) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response();
    cors(&mut response, origin);
    response
}

fn cors(response: &mut Response, origin: Option<&HeaderValue>) {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

fn terminate(condition: &str, origin: Option<&HeaderValue>) -> Response {
    xml(wire::terminate(Some(condition), &[]), origin)
}

/// The BOSH endpoint (see the module documentation).
pub async fn endpoint(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<PeerInfo>,
    request: Request,
) -> Response {
    let gateway = state.control.current();
    let (parts, body) = request.into_parts();
    let listener = &gateway.config.listener;
    let count = |result: &str| gateway.metrics.bosh_requests.with_label_values(&[result]).inc();
    match client_addr::check_origin(&parts.headers, &listener.allowed_origins, listener.allow_missing_origin) {
        OriginDecision::Allowed => {}
        OriginDecision::NotListed => {
            count("origin-not-allowed");
            return plain(StatusCode::FORBIDDEN, "This page's origin may not use this XMPP gateway.\n");
        }
        OriginDecision::Missing => {
            count("origin-missing");
            return plain(StatusCode::FORBIDDEN, "This XMPP gateway requires an Origin header.\n");
        }
    }
    let origin = parts.headers.get(header::ORIGIN).cloned();
    if parts.method == Method::OPTIONS {
        return preflight(origin.as_ref());
    }
    if parts.method != Method::POST {
        const TEXT: &str = "This is an XMPP over BOSH endpoint (XEP-0124, XEP-0206): POST <body/> elements to it.\n";
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, TEXT);
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        return response;
    }
    let limits = body_limits(&gateway);
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limits.max_body_bytes) {
        count("too-large");
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "A BOSH body over the size limit.\n");
    }
    let read = axum::body::to_bytes(body, limits.max_body_bytes);
    let bytes = match tokio::time::timeout(gateway.config.limits.handshake_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            count("too-large");
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "A BOSH body over the size limit.\n");
        }
        Err(_) => {
            count("timeout");
            return plain(StatusCode::REQUEST_TIMEOUT, "The BOSH body did not arrive in time.\n");
        }
    };
    let parsed = std::str::from_utf8(&bytes)
        .map_err(|_| wire::BodyError::BadRequest("not UTF-8"))
        .and_then(|text| wire::parse(text, &limits));
    let body = match parsed {
        Ok(body) => body,
        Err(error) => {
            debug!(%error, "BOSH body refused");
            count(error.condition());
            return terminate(error.condition(), origin.as_ref());
        }
    };
    let answer = match body.sid.clone() {
        None => create(&state, &gateway, peer, &parts, body).await,
        Some(sid) => forward(&state, &sid, &parts, body).await,
    };
    let response = match answer {
        Ok(text) => {
            count("answered");
            xml(text, origin.as_ref())
        }
        Err(Refusal::Condition(condition)) => {
            count(condition);
            terminate(condition, origin.as_ref())
        }
        Err(Refusal::Limit(status, label, text)) => {
            count(label);
            let mut response = plain(status, text);
            cors(&mut response, origin.as_ref());
            response
        }
    };
    if let Some(lease) = parts.extensions.get::<ConnectionLease>() {
        lease.release(gateway.config.limits.handshake_timeout);
    }
    response
}

/// Why a well-formed request got no answer from a session.
enum Refusal {
    /// A terminal condition.
    Condition(&'static str),
    /// A session limit: a status, the metric label, the line.
    Limit(StatusCode, &'static str, &'static str),
}

impl Refusal {
    /// A session limit, answered as the WebSocket endpoint answers it.
    fn limit(refused: Refused) -> Refusal {
        let (label, status, text) = refused.answer();
        Refusal::Limit(status, label, text)
    }
}

fn preflight(origin: Option<&HeaderValue>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    cors(&mut response, origin);
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

/// What one body may be: the largest element limit plus room for the `<body>` tag.
pub(super) fn body_limits(gateway: &Gateway) -> BodyLimits {
    let limits = &gateway.config.limits;
    BodyLimits {
        max_body_bytes: gateway.config.largest_element_limit() + BODY_OVERHEAD_BYTES,
        max_children: gateway.config.bosh.max_children_per_body,
        max_depth: gateway.settings.client_limits.max_depth,
        max_attributes: limits.max_attributes_per_element,
        max_namespace_declarations: limits.max_namespace_declarations_per_element,
    }
}

/// Keeps the HTTP connection of a request open while its session (`entry`) holds it, and makes
/// it one of the session's connections if it has a place left.
fn hold_connection(parts: &Parts, until: Instant, entry: &Entry) -> Option<crate::listener::Http2LongPoll> {
    if let Some(lease) = parts.extensions.get::<ConnectionLease>() {
        lease.hold_until(until, || ConnectionPlace::take(&entry.connections_taken, entry.connections));
    }
    parts.extensions.get::<Http2Connection>().map(Http2Connection::long_poll)
}

/// A session creation request: admitted like a WebSocket handshake, then a session task.
async fn create(
    state: &AppState,
    gateway: &Arc<Gateway>,
    peer: PeerInfo,
    parts: &Parts,
    body: BodyRequest,
) -> Result<String, Refusal> {
    if state.control.is_draining() {
        return Err(Refusal::Condition("system-shutdown"));
    }
    if body.to.as_deref().is_none_or(str::is_empty) {
        return Err(Refusal::Condition("improper-addressing"));
    }
    let config = &gateway.config;
    let address = client_addr::client_address(peer.addr, &parts.headers, &gateway.trusted_proxies);
    let limits = &config.limits;
    let permit = state.control.limiter.try_acquire(address.ip, limits.max_sessions, limits.max_sessions_per_address);
    let permit = permit.map_err(|exceeded| match exceeded {
        LimitExceeded::Total => Refusal::limit(Refused::SessionsTotal),
        LimitExceeded::PerAddress => Refusal::limit(Refused::SessionsPerAddress),
    })?;
    // The session's upstream connection outlives the requests that carry it: a slot of its own.
    let Ok(slot) = state.control.descriptors.slots.clone().try_acquire_owned() else {
        return Err(Refusal::limit(Refused::Descriptors));
    };
    let bosh = &config.bosh;
    let wait = body.wait.map_or(bosh.max_wait, Duration::from_secs).min(bosh.max_wait);
    let hold = body.hold.map_or(1, |hold| usize::try_from(hold).unwrap_or(usize::MAX)).min(bosh.max_hold);
    let sid = new_sid();
    let params = Params {
        sid: sid.clone(),
        wait,
        hold,
        requests: hold + 1,
        inactivity: bosh.inactivity,
        polling: bosh.polling,
        max_pause: bosh.max_pause,
        ver: version(body.ver.as_deref()),
        max_queued_bytes: crate::server::max_write_buffer_bytes(config.largest_element_limit()),
    };
    let (requests, receiver) = mpsc::channel(hold + 3);
    let (reply, answer) = oneshot::channel();
    let client = BoshClient::new(Exchange::new(params, &body, reply, Instant::now().into_std()), receiver);
    // One connection per request the session may hold, and one to send on.
    let entry = Entry { requests, wait, connections_taken: Arc::default(), connections: hold + 2 };
    state.control.bosh.insert(sid.clone(), entry.clone());
    let id = state.next_session_id.fetch_add(1, Ordering::Relaxed);
    let context = SessionContext {
        client: address,
        id,
        drain: state.control.drain.clone(),
        permit,
        descriptors: state.control.descriptors.clone(),
    };
    debug!(client = %context.client.ip, id, "BOSH session created");
    let tracked = state.control.sessions.token();
    let control = state.control.clone();
    let session_gateway = gateway.clone();
    tokio::spawn(async move {
        // The entry goes when the task ends, however it ends.
        let entry = Registered { control: &control, sid: &sid };
        session_gateway.metrics.bosh_sessions_active.inc();
        let client = session::run_client(client, &session_gateway, &context).await;
        // The upstream connection is closed: its slot goes back before the session is counted
        // as ended.
        drop(slot);
        session_gateway.metrics.bosh_sessions_active.dec();
        drop(context);
        client.linger(LINGER).await;
        drop(entry);
        drop(tracked);
    });
    let until = Instant::now() + config.connect.overall_timeout + CONNECTION_SLACK;
    let _busy = hold_connection(parts, until, &entry);
    answer.await.map_err(|_| Refusal::Condition("remote-connection-failed"))
}

/// A request of a live session, handed to its task.
async fn forward(state: &AppState, sid: &str, parts: &Parts, body: BodyRequest) -> Result<String, Refusal> {
    let Some(entry) = state.control.bosh.get(sid) else {
        return Err(Refusal::Condition("item-not-found"));
    };
    let (reply, answer) = oneshot::channel();
    match entry.requests.try_send(Incoming { body, reply }) {
        Ok(()) => state.control.bosh.count_forwarded(),
        // A refused request is not the session's: its connection stays pending.
        Err(mpsc::error::TrySendError::Full(_)) => return Err(Refusal::Condition("policy-violation")),
        Err(mpsc::error::TrySendError::Closed(_)) => return Err(Refusal::Condition("item-not-found")),
    }
    let _busy = hold_connection(parts, Instant::now() + entry.wait + CONNECTION_SLACK, &entry);
    answer.await.map_err(|_| Refusal::Condition("item-not-found"))
}

/// A session's registry entry, removed when dropped.
struct Registered<'a> {
    control: &'a crate::control::Control,
    sid: &'a str,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.control.bosh.remove(self.sid);
    }
}
