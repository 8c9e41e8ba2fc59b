//! A raw WebSocket client for tests (tokio-tungstenite), plus raw HTTP for handshake checks.

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::STEP;

/// What the gateway sent next.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent {
    /// A text message.
    Text(String),
    /// A Close frame with code and reason.
    Close(u16, String),
    /// The connection ended without a Close frame.
    Gone,
}

/// A connected client, over TCP (and TLS) or any other stream (an HTTP/2 stream, `tests/harness/h2.rs`).
pub struct WsClient<S = MaybeTlsStream<TcpStream>> {
    stream: WebSocketStream<S>,
    /// The subprotocol the gateway selected.
    pub protocol: Option<String>,
}

impl<S> std::fmt::Debug for WsClient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsClient").field("protocol", &self.protocol).finish_non_exhaustive()
    }
}

impl WsClient {
    /// Connects with `Sec-WebSocket-Protocol: xmpp`.
    pub async fn connect(url: &str) -> WsClient {
        let request = xmpp_request(url, &[]);
        let (stream, response) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(request))
            .await
            .expect("handshake in time")
            .expect("WebSocket handshake");
        WsClient { stream, protocol: chosen_protocol(&response) }
    }

    /// Connects from `local_ip` (any 127.0.0.0/8 address is local, so a test can tell its client
    /// apart from a proxy on 127.0.0.1) with `Sec-WebSocket-Protocol: xmpp` and `headers` added.
    pub async fn connect_from(url: &str, local_ip: IpAddr, headers: &[(&str, &str)]) -> WsClient {
        let request = xmpp_request(url, headers);
        let host = request.uri().authority().expect("host:port in the URL").as_str().to_owned();
        let remote: SocketAddr = host.parse().expect("the URL names an IP address and port");
        let socket = if remote.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.expect("socket");
        socket.bind(SocketAddr::new(local_ip, 0)).expect("bind the client's address");
        let tcp = tokio::time::timeout(STEP, socket.connect(remote)).await.expect("connect in time").expect("connect");
        let (stream, response) =
            tokio::time::timeout(STEP, tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)))
                .await
                .expect("handshake in time")
                .expect("WebSocket handshake");
        WsClient { stream, protocol: chosen_protocol(&response) }
    }
}

/// An upgrade request for `url` asking for the `xmpp` subprotocol, with `headers` added.
fn xmpp_request(url: &str, headers: &[(&str, &str)]) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    for (name, value) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("name");
        request.headers_mut().append(name, HeaderValue::from_str(value).expect("header value"));
    }
    request
}

/// The subprotocol the gateway chose, from its upgrade answer.
fn chosen_protocol(response: &tokio_tungstenite::tungstenite::handshake::client::Response) -> Option<String> {
    response.headers().get("Sec-WebSocket-Protocol").map(|value| value.to_str().expect("ascii").to_string())
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> WsClient<S> {
    /// A client on a WebSocket already open over `stream`, with the subprotocol the gateway chose.
    pub fn from_stream(stream: WebSocketStream<S>, protocol: Option<String>) -> WsClient<S> {
        WsClient { stream, protocol }
    }

    /// Sends one text message.
    pub async fn send(&mut self, text: &str) {
        self.stream.send(Message::Text(text.into())).await.expect("send");
    }

    /// Sends any message (binary, ping, ...).
    pub async fn send_message(&mut self, message: Message) {
        self.stream.send(message).await.expect("send");
    }

    /// The next text message, Close, or end; ping/pong frames are skipped. Panics after [`STEP`].
    pub async fn next_event(&mut self) -> WsEvent {
        let event = tokio::time::timeout(STEP, async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Text(text))) => return WsEvent::Text(text.to_string()),
                    Some(Ok(Message::Close(frame))) => {
                        return match frame {
                            Some(frame) => WsEvent::Close(frame.code.into(), frame.reason.to_string()),
                            None => WsEvent::Close(1005, String::new()),
                        }
                    }
                    Some(Ok(Message::Binary(_))) => panic!("the gateway sent a binary message"),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return WsEvent::Gone,
                }
            }
        })
        .await;
        event.expect("the gateway answered in time")
    }

    /// Like [`Self::next_event`], but a Ping from the gateway is returned too, as `None` (the
    /// Pong is answered by tungstenite on the next read or write). Panics after [`STEP`].
    pub async fn next_event_or_ping(&mut self) -> Option<WsEvent> {
        let event = tokio::time::timeout(STEP, async {
            loop {
                return match self.stream.next().await {
                    Some(Ok(Message::Ping(_))) => None,
                    Some(Ok(Message::Text(text))) => Some(WsEvent::Text(text.to_string())),
                    Some(Ok(Message::Close(frame))) => Some(match frame {
                        Some(frame) => WsEvent::Close(frame.code.into(), frame.reason.to_string()),
                        None => WsEvent::Close(1005, String::new()),
                    }),
                    Some(Ok(Message::Binary(_))) => panic!("the gateway sent a binary message"),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => Some(WsEvent::Gone),
                };
            }
        })
        .await;
        event.expect("the gateway sent something in time")
    }

    /// Skips text messages until one contains `needle` (at most 50); panics if the connection
    /// ends first.
    pub async fn wait_for(&mut self, needle: &str) -> String {
        for _ in 0..50 {
            match self.next_event().await {
                WsEvent::Text(text) if text.contains(needle) => return text,
                WsEvent::Text(_) => continue,
                other => panic!("connection ended while waiting for {needle:?}: {other:?}"),
            }
        }
        panic!("{needle:?} not among the next 50 messages")
    }

    /// Opens a stream to `domain`, logs in with SASL PLAIN and binds `resource` (no presence
    /// sent); returns the full JID.
    pub async fn login_plain(&mut self, domain: &str, user: &str, password: &str, resource: &str) -> String {
        let open = format!(r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="{domain}" version="1.0"/>"#);
        self.send(&open).await;
        self.wait_for("<open ").await;
        self.wait_for("<mechanism>PLAIN</mechanism>").await;
        let payload = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">{payload}</auth>"#))
            .await;
        self.wait_for("<success").await;
        self.send(&open).await;
        self.wait_for("<open ").await;
        self.wait_for("urn:ietf:params:xml:ns:xmpp-bind").await;
        self.send(&format!(
            r#"<iq xmlns="jabber:client" type="set" id="bind1"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"><resource>{resource}</resource></bind></iq>"#
        ))
        .await;
        let bound = self.wait_for("<jid>").await;
        let jid = bound.split("<jid>").nth(1).and_then(|rest| rest.split("</jid>").next());
        jid.expect("a bound JID").to_string()
    }

    /// The next text message; panics on anything else.
    pub async fn recv_text(&mut self) -> String {
        match self.next_event().await {
            WsEvent::Text(text) => text,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The next event must be a Close frame; returns its code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        match self.next_event().await {
            WsEvent::Close(code, reason) => (code, reason),
            other => panic!("expected a WebSocket Close, got {other:?}"),
        }
    }

    /// Completes the closing handshake from the client side.
    pub async fn close(&mut self) {
        let _ = self.stream.close(None).await;
    }

    /// Drops the TCP connection without any WebSocket Close.
    pub fn vanish(self) {
        drop(self.stream.into_inner());
    }
}

/// Sends a raw HTTP/1.1 request and returns the status code and the whole response head + body
/// received until the server closes or 2 KiB arrive.
pub async fn raw_http(addr: &str, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write request");
    let mut response = Vec::new();
    let mut buf = [0u8; 2048];
    let _ = tokio::time::timeout(STEP, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    response.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&response);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length = text[..head_end]
                            .lines()
                            .find_map(|line| {
                                line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok());
                        match length {
                            Some(length) if response.len() >= head_end + 4 + length => break,
                            None if text.starts_with("HTTP/1.1 101") => break,
                            _ => {}
                        }
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, text)
}

/// A WebSocket upgrade request for `path` on `host` with optional extra header lines.
pub fn upgrade_request(host: &str, path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}
