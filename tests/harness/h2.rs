//! HTTP/2 against the gateway's `wss://` listener: a certificate for it, TLS with chosen ALPN
//! protocols, a WebSocket over an extended CONNECT stream (RFC 8441) through hyper's client, and
//! raw frames for what no well-behaved client sends.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::ws_client::WsClient;
use super::{TestCa, STEP};

/// The name in the listener's certificate.
pub const HOST: &str = "gw.test";

/// A `wss://` listener certificate from `ca` for [`HOST`], written to a temporary directory.
pub struct ListenerCert {
    dir: tempfile::TempDir,
}

impl ListenerCert {
    /// A certificate and key for [`HOST`].
    pub fn new(ca: &TestCa) -> ListenerCert {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = ca.leaf_pem(&[HOST]);
        std::fs::write(dir.path().join("cert.pem"), cert).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), key).expect("write key");
        ListenerCert { dir }
    }

    /// The `tls_cert_file`/`tls_key_file` lines of a `[listener]` section.
    pub fn toml_lines(&self) -> String {
        format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            self.dir.path().join("cert.pem").display(),
            self.dir.path().join("key.pem").display()
        )
    }
}

/// `host:port` of a `wss://…` URL.
pub fn addr_of(url: &str) -> SocketAddr {
    let rest = url.split("://").nth(1).expect("scheme");
    rest.split('/').next().expect("authority").parse().expect("an IP address and port")
}

/// A TLS connection to `addr` for [`HOST`], trusting `ca`, offering `alpn` (none when empty).
pub async fn tls(addr: SocketAddr, ca: &TestCa, alpn: &[&str]) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.as_bytes().to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(ServerName::try_from(HOST).expect("name"), tcp).await
}

/// The protocol the server chose by ALPN, as text.
pub fn negotiated(tls: &TlsStream<TcpStream>) -> Option<String> {
    tls.get_ref().1.alpn_protocol().map(|protocol| String::from_utf8_lossy(protocol).into_owned())
}

/// The answer to a request that did not become a WebSocket.
#[derive(Debug)]
pub struct Refused {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: hyper::HeaderMap,
    /// The body, as text.
    pub body: String,
}

/// One HTTP/2 connection to the gateway (hyper's client), carrying any number of requests.
pub struct H2Connection {
    send: SendRequest<Body>,
    /// The connection task; ends when the connection does.
    pub task: tokio::task::JoinHandle<()>,
}

/// A WebSocket over an HTTP/2 stream.
pub type H2WsClient = WsClient<TokioIo<hyper::upgrade::Upgraded>>;

impl H2Connection {
    /// Connects to `addr` offering only `h2` by ALPN and runs the HTTP/2 handshake.
    pub async fn connect(addr: SocketAddr, ca: &TestCa) -> H2Connection {
        let tls = tls(addr, ca, &["h2"]).await.expect("TLS handshake");
        assert_eq!(negotiated(&tls).as_deref(), Some("h2"), "the gateway did not choose h2");
        let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/2 handshake");
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        H2Connection { send, task }
    }

    /// Whether the connection is still usable for new requests.
    pub fn is_open(&self) -> bool {
        !self.send.is_closed()
    }

    /// Sends `request` and returns the response (its body unread).
    pub async fn request(
        &mut self,
        request: hyper::Request<Body>,
    ) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
        tokio::time::timeout(STEP, async {
            self.send.ready().await?;
            self.send.send_request(request).await
        })
        .await
        .expect("an answer in time")
    }

    /// An extended CONNECT for a WebSocket on `path` (RFC 8441 §4) with `headers` added; the
    /// `xmpp` subprotocol is offered unless `headers` name `sec-websocket-protocol` themselves.
    pub fn connect_request(path: &str, headers: &[(&str, &str)]) -> hyper::Request<Body> {
        let mut request = hyper::Request::builder()
            .method(hyper::Method::CONNECT)
            .uri(format!("https://{HOST}{path}"))
            .header("sec-websocket-version", "13")
            .extension(hyper::ext::Protocol::from_static("websocket"));
        if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-protocol")) {
            request = request.header("sec-websocket-protocol", "xmpp");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(Body::empty()).expect("request")
    }

    /// Opens a WebSocket on `path`: the client when the gateway answered 200, else its answer.
    pub async fn websocket(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<H2WsClient, Refused> {
        let response = self.request(Self::connect_request(path, headers)).await.expect("HTTP/2 response");
        if response.status() != hyper::StatusCode::OK {
            return Err(read_refusal(response).await);
        }
        let protocol =
            response.headers().get("sec-websocket-protocol").map(|value| value.to_str().expect("ascii").to_owned());
        let upgraded = hyper::upgrade::on(response).await.expect("the stream becomes the WebSocket");
        let stream = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
        Ok(WsClient::from_stream(stream, protocol))
    }
}

/// Status, headers and body of a response.
pub async fn read_refusal(response: hyper::Response<hyper::body::Incoming>) -> Refused {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(Body::new(response.into_body()), 64 * 1024);
    let body = tokio::time::timeout(STEP, body).await.expect("body in time");
    let body = body.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default();
    Refused { status, headers, body }
}

// ---------------------------------------------------------------------------------------------
// Raw frames (RFC 9113 §4, §6).

/// Frame types.
pub mod frame {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
    /// Flags.
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
}

/// SETTINGS identifiers (RFC 9113 §6.5.2, RFC 8441 §3).
pub mod setting {
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
}

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame: header and payload.
pub fn encode(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("frame length");
    assert!(length < 1 << 24, "frame too long");
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&length.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A SETTINGS frame with `pairs`.
pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = pairs
        .iter()
        .flat_map(|(id, value)| [id.to_be_bytes().to_vec(), value.to_be_bytes().to_vec()].concat())
        .collect();
    encode(frame::SETTINGS, 0, 0, &payload)
}

/// An HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1), the first byte's high bits
/// being `first`.
fn hpack_integer(out: &mut Vec<u8>, first: u8, prefix: u8, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A header block of literal fields without indexing and without Huffman coding (RFC 7541
/// §6.2.2): enough for any request, decodable by any HPACK decoder.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_integer(&mut out, 0x00, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_integer(&mut out, 0x00, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The fields of an extended CONNECT for a WebSocket on `path` with the `xmpp` subprotocol.
pub fn websocket_connect_fields(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "CONNECT".into()),
        (":protocol", "websocket".into()),
        (":scheme", "https".into()),
        (":path", path.into()),
        (":authority", HOST.into()),
        ("sec-websocket-version", "13".into()),
        ("sec-websocket-protocol", "xmpp".into()),
    ]
}

/// A HEADERS frame (END_HEADERS set) opening `stream` with `fields`.
pub fn headers(stream: u32, fields: &[(&str, String)], end_stream: bool) -> Vec<u8> {
    let fields: Vec<(&str, &str)> = fields.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let flags = frame::END_HEADERS | if end_stream { frame::END_STREAM } else { 0 };
    encode(frame::HEADERS, flags, stream, &header_block(&fields))
}

/// A frame as read.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The first whole frame in `buffer` (bytes as read from the connection), taken out of it;
    /// `None` while the buffer holds less than a frame.
    pub fn take_from(buffer: &mut Vec<u8>) -> Option<Frame> {
        let length = u32::from_be_bytes([0, *buffer.first()?, *buffer.get(1)?, *buffer.get(2)?]) as usize;
        if buffer.len() < 9 + length {
            return None;
        }
        let mut bytes: Vec<u8> = buffer.drain(..9 + length).collect();
        let payload = bytes.split_off(9);
        Some(Frame {
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
            payload,
        })
    }

    /// The (id, value) pairs of a SETTINGS frame.
    pub fn settings(&self) -> Vec<(u16, u32)> {
        self.payload
            .chunks_exact(6)
            .map(|pair| {
                (u16::from_be_bytes([pair[0], pair[1]]), u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]))
            })
            .collect()
    }

    /// The error code of a GOAWAY or RST_STREAM frame.
    pub fn error_code(&self) -> u32 {
        let at = if self.kind == frame::GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().expect("4 bytes"))
    }
}

/// A raw HTTP/2 connection over TLS: the preface and an empty SETTINGS frame sent.
pub struct RawH2 {
    pub tls: TlsStream<TcpStream>,
    buffer: Vec<u8>,
}

impl RawH2 {
    /// Connects offering `h2`, sends the preface and `client_settings`.
    pub async fn connect(addr: SocketAddr, ca: &TestCa, client_settings: &[(u16, u32)]) -> RawH2 {
        let mut tls = tls(addr, ca, &["h2"]).await.expect("TLS handshake");
        assert_eq!(negotiated(&tls).as_deref(), Some("h2"));
        tls.write_all(&[PREFACE, &settings(client_settings)].concat()).await.expect("preface");
        RawH2 { tls, buffer: Vec::new() }
    }

    /// Writes bytes; `Err` once the gateway closed the connection.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes).await?;
        self.tls.flush().await
    }

    /// The next frame, `None` when the connection ended (or nothing came within [`STEP`]).
    pub async fn next_frame(&mut self) -> Option<Frame> {
        tokio::time::timeout(STEP, async {
            loop {
                if let Some(frame) = Frame::take_from(&mut self.buffer) {
                    return Some(frame);
                }
                let mut chunk = [0u8; 16 * 1024];
                match self.tls.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Frames until one matches `wanted` (returned), or the connection ends (`None`). Every frame
    /// read, the match included, is appended to `seen`.
    pub async fn until(&mut self, seen: &mut Vec<Frame>, wanted: impl Fn(&Frame) -> bool) -> Option<Frame> {
        while let Some(frame) = self.next_frame().await {
            seen.push(frame.clone());
            if wanted(&frame) {
                return Some(frame);
            }
        }
        None
    }
}
