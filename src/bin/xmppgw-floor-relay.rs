//! `xmppgw-floor-relay`: the least a WebSocket-to-TCP XMPP relay can do, measured beside the
//! gateway so that the benchmark can say how much of the gateway's cost is its own XML and
//! session work (issue 13, docs/PERFORMANCE.md).
//!
//! It accepts WebSocket upgrades that offer the `xmpp` subprotocol on `/<domain>` through the
//! same HTTP and WebSocket stack as the gateway (hyper HTTP/1.1, axum's upgrade, tungstenite)
//! with the same buffer sizes and the same tokio runtime, then moves bytes: each client text
//! message is written to the upstream TCP stream as it is (messages already readable are
//! written together, as the gateway batches them), and each upstream read goes back as one
//! text message, element boundaries or not. It parses no XML. The only stream handling is
//! hard-coded bytes: a message starting with `<open` becomes a fixed stream header, one starting
//! with `<close` becomes `</stream:stream>`, the server's stream header (found by the bytes
//! `<stream:stream` and the next `>`) becomes a fixed `<open/>`, and with `--starttls-upstream`
//! it runs the same STARTTLS exchange as the gateway (header, features, `<starttls/>`,
//! `<proceed/>`, a rustls handshake verified against the domain with the gateway's own client
//! configuration) before the first client byte goes upstream.
//!
//! It is a floor, not a product: no limits beyond the WebSocket layer's, no timers, no metrics,
//! no error reporting to the client, and it trusts the benchmark's fake upstream to behave.
//! Built only with `--features bench`; listens on and connects to loopback addresses only.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use clap::Parser;
use futures_util::{FutureExt, SinkExt, StreamExt};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;

use xmpp_ws_gateway::config::LimitsConfig;
use xmpp_ws_gateway::server::{max_write_buffer_bytes, SUBPROTOCOL, WS_WRITE_BUFFER_BYTES};
use xmpp_ws_gateway::session::READ_CHUNK_BYTES;
use xmpp_ws_gateway::upstream::{tls::client_config, SystemRoots, UpstreamIo};

#[path = "common/scan.rs"]
#[allow(dead_code)]
mod scan;
use scan::find;

/// The `<open/>` sent to the client for every server stream header (fixed: no XML is read).
const OPEN_REPLY_START: &str =
    r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" id="floor" version="1.0" xml:lang="en" from=""#;
const STARTTLS: &[u8] = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
const STREAM_END: &[u8] = b"</stream:stream>";
/// Most bytes of client messages written upstream in one write (the gateway's batch size).
const UPSTREAM_BATCH_BYTES: usize = 16 * 1024;

/// A WebSocket-to-TCP relay with no XML, the floor the gateway is measured against.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:5290")]
    listen: SocketAddr,
    /// A plaintext upstream, `DOMAIN=ADDRESS`, served on `/DOMAIN` (repeatable).
    #[arg(long, value_parser = parse_route)]
    upstream: Vec<(String, SocketAddr)>,
    /// A STARTTLS upstream, `DOMAIN=ADDRESS`, served on `/DOMAIN` (repeatable).
    #[arg(long, value_parser = parse_route)]
    starttls_upstream: Vec<(String, SocketAddr)>,
    /// CA certificate (PEM) trusted for the STARTTLS upstreams, besides the system roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

fn parse_route(text: &str) -> Result<(String, SocketAddr), String> {
    let (domain, address) = text.split_once('=').ok_or("expected DOMAIN=ADDRESS")?;
    let address: SocketAddr = address.parse().map_err(|error| format!("{address}: {error}"))?;
    if !address.ip().is_loopback() {
        return Err("the floor relay connects to loopback addresses only".into());
    }
    Ok((domain.to_string(), address))
}

/// Where one domain's sessions go.
struct Route {
    address: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
}

struct Relay {
    routes: HashMap<String, Route>,
    limits: LimitsConfig,
}

fn main() {
    let args = Args::parse();
    assert!(args.listen.ip().is_loopback(), "the floor relay listens on loopback only");
    let mut routes = HashMap::new();
    for (domain, address) in args.upstream {
        routes.insert(domain, Route { address, tls: None });
    }
    if !args.starttls_upstream.is_empty() {
        let tls =
            client_config(&SystemRoots::load(), args.ca_file.as_deref(), false).expect("TLS client configuration");
        for (domain, address) in args.starttls_upstream {
            routes.insert(domain, Route { address, tls: Some(tls.clone()) });
        }
    }
    let relay = Arc::new(Relay { routes, limits: LimitsConfig::default() });
    // The gateway's runtime: multi-threaded, one worker per CPU (src/main.rs).
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(args.listen).await.expect("bind the floor relay");
        let router = Router::new().route("/{domain}", any(upgrade)).with_state(relay.clone());
        // SIGTERM ends the process by returning from main (so that tools such as callgrind,
        // which the benchmark runs it under, write their results).
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        // The benchmark script waits for this line.
        println!("ready {}", listener.local_addr().expect("local address"));
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = terminate.recv() => return,
            };
            let (stream, _) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    eprintln!("accept: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            let limits = relay.limits.clone();
            tokio::spawn(async move {
                // The gateway's HTTP/1.1 settings (src/listener/connection.rs).
                let service = hyper::service::service_fn(move |request| {
                    let mut router = router.clone();
                    async move { router.call(request).await }
                });
                let mut http = http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(limits.handshake_timeout)
                    .max_buf_size(limits.max_header_bytes)
                    .max_header_size(limits.max_header_bytes);
                let _ = http.serve_connection(TokioIo::new(stream), service).with_upgrades().await;
            });
        }
    });
}

async fn upgrade(State(relay): State<Arc<Relay>>, Path(domain): Path<String>, upgrade: WebSocketUpgrade) -> Response {
    if !relay.routes.contains_key(&domain) {
        return (StatusCode::NOT_FOUND, "no such upstream\n").into_response();
    }
    let max_message = relay.limits.max_element_bytes;
    // The gateway's WebSocket settings (src/server.rs).
    upgrade
        .protocols([SUBPROTOCOL])
        .read_buffer_size(relay.limits.websocket_read_buffer_bytes)
        .write_buffer_size(WS_WRITE_BUFFER_BYTES)
        .max_write_buffer_size(max_write_buffer_bytes(max_message))
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            let _ = session(socket, &relay, &domain).await;
        })
}

/// The upstream stream header for `domain` (`from` is never sent before TLS; none is sent here).
fn stream_header(domain: &str) -> Vec<u8> {
    format!("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>").into_bytes()
}

/// One session: wait for the client's `<open/>`, connect (and STARTTLS), then relay.
async fn session(mut ws: WebSocket, relay: &Relay, domain: &str) -> io::Result<()> {
    let route = &relay.routes[domain];
    match ws.next().await {
        Some(Ok(Message::Text(text))) if text.starts_with("<open") => {}
        _ => return Ok(()),
    }
    let mut tcp = TcpStream::connect(route.address).await?;
    tcp.set_nodelay(true)?;
    let header = stream_header(domain);
    let mut upstream = match &route.tls {
        None => UpstreamIo::Plain(tcp),
        Some(config) => {
            let mut pending = Vec::new();
            write_flush(&mut tcp, &header).await?;
            read_past(&mut tcp, &mut pending, b"</stream:features>").await?;
            write_flush(&mut tcp, STARTTLS).await?;
            read_past(&mut tcp, &mut pending, b"<proceed").await?;
            read_past(&mut tcp, &mut pending, b">").await?;
            let name = ServerName::try_from(domain.to_string()).map_err(io::Error::other)?;
            let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await?;
            UpstreamIo::Tls(Box::new(tls))
        }
    };
    write_flush(&mut upstream, &header).await?;
    relay_loop(ws, upstream, domain).await
}

async fn write_flush<W: AsyncWrite + Unpin>(io: &mut W, bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.flush().await
}

/// Reads until `needle` has arrived, dropping everything up to and including it.
async fn read_past<R: AsyncRead + Unpin>(io: &mut R, pending: &mut Vec<u8>, needle: &[u8]) -> io::Result<()> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(at) = find(pending, needle) {
            pending.drain(..at + needle.len());
            return Ok(());
        }
        let read = io.read(&mut chunk).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        pending.extend_from_slice(&chunk[..read]);
    }
}

thread_local! {
    /// One upstream read buffer per runtime thread, as the gateway has (src/upstream/mod.rs).
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; READ_CHUNK_BYTES].into_boxed_slice());
}

/// Server bytes not yet sent to the client: a stream header cut by a read, or the start of a
/// UTF-8 character cut by one. Empty (no allocation) for an idle session.
#[derive(Default)]
struct FromServer {
    pending: Vec<u8>,
    /// The server's next bytes start with a stream header to turn into `<open/>`.
    expect_header: bool,
}

impl FromServer {
    /// Takes one upstream read; the messages to send to the client, in order.
    fn take(&mut self, bytes: &[u8], domain: &str, out: &mut Vec<String>) {
        self.pending.extend_from_slice(bytes);
        let mut from = 0;
        if self.expect_header {
            let Some(start) = find(&self.pending, b"<stream:stream") else { return };
            let Some(end) = self.pending[start..].iter().position(|&b| b == b'>') else { return };
            out.push(format!("{OPEN_REPLY_START}{domain}\"/>"));
            from = start + end + 1;
            self.expect_header = false;
        }
        let rest = &self.pending[from..];
        let valid = match std::str::from_utf8(rest) {
            Ok(text) => text.len(),
            Err(error) if error.error_len().is_none() => error.valid_up_to(),
            Err(_) => rest.len(), // not UTF-8 at all: passed on lossily, the client will complain
        };
        if valid > 0 {
            out.push(String::from_utf8_lossy(&rest[..valid]).into_owned());
        }
        self.pending.drain(..from + valid);
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
    }
}

/// Reads once from `io` into the thread's scratch buffer and hands the bytes to `take`.
async fn read_with<R: AsyncRead + Unpin>(io: &mut R, mut take: impl FnMut(&[u8])) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        READ_SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    take(buf.filled());
                    Poll::Ready(Ok(buf.filled().len()))
                }
                Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                Poll::Pending => Poll::Pending,
            }
        })
    })
    .await
}

/// Appends one client message to the upstream batch, with the two hard-coded translations.
fn client_bytes(text: &str, header: &[u8], batch: &mut Vec<u8>, from_server: &mut FromServer) {
    if text.starts_with("<open") {
        batch.extend_from_slice(header);
        from_server.expect_header = true;
    } else if text.starts_with("<close") {
        batch.extend_from_slice(STREAM_END);
    } else {
        batch.extend_from_slice(text.as_bytes());
    }
}

async fn relay_loop(mut ws: WebSocket, mut upstream: UpstreamIo, domain: &str) -> io::Result<()> {
    let header = stream_header(domain);
    let mut from_server = FromServer { pending: Vec::new(), expect_header: true };
    let mut messages = Vec::new();
    loop {
        tokio::select! {
            message = ws.next() => {
                let Some(Ok(message)) = message else { break };
                let Message::Text(text) = message else { continue };
                let mut batch = Vec::new();
                client_bytes(text.as_str(), &header, &mut batch, &mut from_server);
                // Messages already readable go out in the same write, as the gateway does.
                while batch.len() < UPSTREAM_BATCH_BYTES {
                    match ws.next().now_or_never() {
                        Some(Some(Ok(Message::Text(text)))) => client_bytes(text.as_str(), &header, &mut batch, &mut from_server),
                        Some(Some(Ok(_))) => {}
                        Some(_) => return upstream.shutdown().await,
                        None => break,
                    }
                }
                write_flush(&mut upstream, &batch).await?;
            }
            read = read_with(&mut upstream, |bytes| from_server.take(bytes, domain, &mut messages)) => {
                if read? == 0 {
                    break;
                }
                for text in messages.drain(..) {
                    ws.feed(Message::Text(text.into())).await.map_err(io::Error::other)?;
                }
                ws.flush().await.map_err(io::Error::other)?;
            }
        }
    }
    let _ = ws.close().await;
    upstream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_bytes_become_messages_with_the_header_replaced() {
        let mut from_server = FromServer { pending: Vec::new(), expect_header: true };
        let mut out = Vec::new();
        from_server.take(b"<?xml version='1.0'?><stream:str", "d.example", &mut out);
        assert!(out.is_empty());
        from_server.take("eam id='1'><stream:features/><a>\u{e9}".as_bytes(), "d.example", &mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].starts_with("<open ") && out[0].ends_with(r#"from="d.example"/>"#));
        assert_eq!(out[1], "<stream:features/><a>\u{e9}");
        // A character cut by a read waits for its end.
        out.clear();
        let bytes = "<b>\u{e9}</b>".as_bytes();
        from_server.take(&bytes[..4], "d.example", &mut out);
        from_server.take(&bytes[4..], "d.example", &mut out);
        assert_eq!(out, ["<b>", "\u{e9}</b>"]);
        assert!(from_server.pending.is_empty());
    }

    #[test]
    fn client_open_and_close_are_translated() {
        let mut from_server = FromServer::default();
        let mut batch = Vec::new();
        client_bytes("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>", b"<H>", &mut batch, &mut from_server);
        client_bytes("<message/>", b"<H>", &mut batch, &mut from_server);
        client_bytes("<close/>", b"<H>", &mut batch, &mut from_server);
        assert_eq!(batch, b"<H><message/></stream:stream>");
        assert!(from_server.expect_header);
    }
}
