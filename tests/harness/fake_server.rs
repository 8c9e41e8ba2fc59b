//! A scripted fake XMPP server on a real loopback socket.
//!
//! Each test writes the server's side as a script: read until some bytes arrive, write these
//! bytes, upgrade to TLS, close. Everything received is captured, before and after TLS, so tests
//! can assert what crossed the wire in plaintext.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::{Leaf, STEP};

/// A listening fake server.
pub struct FakeServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

/// One accepted connection.
pub struct ServerConn {
    plain: Option<TcpStream>,
    tls: Option<Box<TlsStream<TcpStream>>>,
    acceptor: TlsAcceptor,
    /// Every byte received before TLS.
    pub plaintext_received: Vec<u8>,
    /// Every byte received after TLS (decrypted).
    pub tls_received: Vec<u8>,
    /// Received but not yet consumed by a `read_until`.
    pending: Vec<u8>,
}

/// What a read ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// The peer closed its side (EOF, or TLS close_notify then EOF).
    Eof,
    /// The connection was reset or failed.
    Error,
}

impl FakeServer {
    /// Binds 127.0.0.1:0 with a certificate for TLS.
    pub async fn start(leaf: Leaf) -> FakeServer {
        Self::start_on("127.0.0.1:0", leaf).await
    }

    /// Binds `address` (another loopback address such as `127.0.0.2:0` or `[::1]:0`, or a
    /// fixed port) with a certificate for TLS; `None` when the address cannot be bound.
    pub async fn try_start_on(address: &str, leaf: Leaf) -> Option<FakeServer> {
        let listener = TcpListener::bind(address).await.ok()?;
        Some(FakeServer { listener, acceptor: Self::acceptor(leaf) })
    }

    /// Like [`Self::try_start_on`], panicking when the address cannot be bound.
    pub async fn start_on(address: &str, leaf: Leaf) -> FakeServer {
        Self::try_start_on(address, leaf).await.unwrap_or_else(|| panic!("bind fake server on {address}"))
    }

    /// Binds 127.0.0.1:0 with 4 KiB receive buffers on the connections it accepts (set on the
    /// listener, so the first window the gateway sees is small): a server that stops reading
    /// pushes back at once instead of after the many MiB loopback buffers can grow to.
    pub async fn start_with_small_receive_buffers(leaf: Leaf) -> FakeServer {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        socket.bind("127.0.0.1:0".parse().expect("address")).expect("bind fake server");
        FakeServer { listener: socket.listen(16).expect("listen"), acceptor: Self::acceptor(leaf) }
    }

    /// Accepts a connection if one arrives within `within`.
    pub async fn try_accept(&self, within: std::time::Duration) -> Option<ServerConn> {
        let (stream, _) = tokio::time::timeout(within, self.listener.accept()).await.ok()?.ok()?;
        Some(self.connection(stream))
    }

    /// A connection accepted on the plain socket, TLS yet to come.
    fn connection(&self, stream: TcpStream) -> ServerConn {
        ServerConn {
            plain: Some(stream),
            tls: None,
            acceptor: self.acceptor.clone(),
            plaintext_received: Vec::new(),
            tls_received: Vec::new(),
            pending: Vec::new(),
        }
    }

    fn acceptor(leaf: Leaf) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(leaf.chain, leaf.key)
            .expect("server certificate");
        config.alpn_protocols = vec![b"xmpp-client".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }

    /// The address to configure as the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("local addr")
    }

    /// Accepts the next connection (within [`STEP`]).
    pub async fn accept(&self) -> ServerConn {
        let (stream, _) = tokio::time::timeout(STEP, self.listener.accept())
            .await
            .expect("gateway connected in time")
            .expect("accept");
        self.connection(stream)
    }

    /// Accepts the next connection and immediately does a TLS handshake (direct TLS).
    pub async fn accept_direct_tls(&self) -> ServerConn {
        let mut conn = self.accept().await;
        conn.upgrade_tls().await;
        conn
    }
}

/// What the server saw of the TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSeen {
    /// The SNI the client sent.
    pub sni: Option<String>,
    /// The ALPN protocol agreed.
    pub alpn: Option<Vec<u8>>,
    /// Whether the handshake resumed an earlier session.
    pub resumed: bool,
}

impl ServerConn {
    /// SNI, ALPN and resumption of the TLS session, once TLS is up.
    pub fn tls_seen(&self) -> Option<TlsSeen> {
        let (_, connection) = self.tls.as_ref()?.get_ref();
        Some(TlsSeen {
            sni: connection.server_name().map(str::to_string),
            alpn: connection.alpn_protocol().map(<[u8]>::to_vec),
            resumed: connection.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        })
    }
    async fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(tls) = self.tls.as_mut() {
            let n = tls.read(buf).await?;
            self.tls_received.extend_from_slice(&buf[..n]);
            Ok(n)
        } else {
            let plain = self.plain.as_mut().expect("connection");
            let n = plain.read(buf).await?;
            self.plaintext_received.extend_from_slice(&buf[..n]);
            Ok(n)
        }
    }

    /// Reads until `needle` has arrived and returns everything up to and including it.
    /// Panics after [`STEP`] or if the connection ends first.
    pub async fn read_until(&mut self, needle: &str) -> String {
        String::from_utf8(self.read_until_bytes(needle).await).expect("UTF-8 from the gateway")
    }

    /// [`Self::read_until`] for binary data.
    pub async fn read_until_bytes(&mut self, needle: &str) -> Vec<u8> {
        let needle = needle.as_bytes();
        let mut buf = [0u8; 4096];
        let result = tokio::time::timeout(STEP, async {
            loop {
                if let Some(pos) = find(&self.pending, needle) {
                    let rest = self.pending.split_off(pos + needle.len());
                    let got = std::mem::replace(&mut self.pending, rest);
                    return Ok(got);
                }
                let n = self.read_some(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "EOF"));
                }
                self.pending.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        match result {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error)) => panic!(
                "connection ended before {:?} arrived ({error}); pending {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&self.pending)
            ),
            Err(_) => panic!(
                "timed out waiting for {:?}; pending {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&self.pending)
            ),
        }
    }

    /// Reads the gateway's stream header (optional XML declaration, then the `<stream:stream ...>`
    /// start tag) and returns it.
    pub async fn read_stream_header(&mut self) -> String {
        let mut header = self.read_until("<stream:stream").await;
        header.push_str(&self.read_until(">").await);
        header
    }

    /// Reads until the gateway ends the connection; returns what arrived meanwhile and how it ended.
    pub async fn read_to_end(&mut self) -> (String, ReadEnd) {
        let mut buf = [0u8; 4096];
        let end = tokio::time::timeout(STEP, async {
            loop {
                match self.read_some(&mut buf).await {
                    Ok(0) => return ReadEnd::Eof,
                    Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                    Err(_) => return ReadEnd::Error,
                }
            }
        })
        .await
        .expect("gateway closed the upstream connection in time");
        (String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned(), end)
    }

    /// Writes bytes (over TLS once upgraded).
    pub async fn write(&mut self, text: &str) {
        self.write_bytes(text.as_bytes()).await;
    }

    /// Writes bytes; false when the connection is gone (the gateway closed it).
    pub async fn try_write(&mut self, text: &str) -> bool {
        let bytes = text.as_bytes();
        if let Some(tls) = self.tls.as_mut() {
            tls.write_all(bytes).await.is_ok() && tls.flush().await.is_ok()
        } else {
            self.plain.as_mut().expect("connection").write_all(bytes).await.is_ok()
        }
    }

    /// Writes raw bytes.
    pub async fn write_bytes(&mut self, bytes: &[u8]) {
        if let Some(tls) = self.tls.as_mut() {
            tls.write_all(bytes).await.expect("write");
            tls.flush().await.expect("flush");
        } else {
            let plain = self.plain.as_mut().expect("connection");
            plain.write_all(bytes).await.expect("write");
        }
    }

    /// Server side of the TLS handshake (after `<proceed/>`, or at once for direct TLS).
    pub async fn upgrade_tls(&mut self) {
        assert!(self.pending.is_empty(), "bytes pending before TLS: {:?}", String::from_utf8_lossy(&self.pending));
        let plain = self.plain.take().expect("plain connection");
        let tls = tokio::time::timeout(STEP, self.acceptor.accept(plain))
            .await
            .expect("TLS handshake in time")
            .expect("TLS handshake");
        self.tls = Some(Box::new(tls));
    }

    /// Like [`Self::upgrade_tls`] but returns whether the handshake succeeded (the gateway
    /// may refuse the certificate).
    pub async fn try_upgrade_tls(&mut self) -> bool {
        let plain = self.plain.take().expect("plain connection");
        match tokio::time::timeout(STEP, self.acceptor.accept(plain)).await {
            Ok(Ok(tls)) => {
                self.tls = Some(Box::new(tls));
                true
            }
            _ => false,
        }
    }

    /// The usual opening: read the gateway's header, answer with a header and features that
    /// require STARTTLS, read `<starttls/>`, send `<proceed/>`, do TLS, read the post-TLS
    /// header, answer with `header` and `features`. Returns the post-TLS header received.
    pub async fn open_with_starttls(&mut self, domain: &str, post_tls_features: &str) -> String {
        self.starttls_then(
            domain,
            &format!(
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='ID-2' from='{domain}' version='1.0' xml:lang='en'>{post_tls_features}"
            ),
        )
        .await
    }

    /// Like [`Self::open_with_starttls`], but after the post-TLS header the server writes
    /// `post_tls_reply` verbatim (its own header, in any style, and whatever follows). Returns
    /// the post-TLS header received.
    pub async fn starttls_then(&mut self, domain: &str, post_tls_reply: &str) -> String {
        let header = self.starttls_only(domain).await;
        self.write(post_tls_reply).await;
        header
    }

    /// The plaintext part and the TLS handshake: reads the gateway's header, answers with a
    /// header and features requiring STARTTLS, reads `<starttls/>`, sends `<proceed/>`, does TLS
    /// and reads the post-TLS header, which it returns. The server has not answered it yet.
    pub async fn starttls_only(&mut self, domain: &str) -> String {
        self.read_stream_header().await;
        self.write(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='PRE-TLS-ID' from='{domain}' version='1.0' xml:lang='en'>\
             <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
             <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism><mechanism>X-PRE-TLS-ONLY</mechanism></mechanisms></stream:features>"
        ))
        .await;
        self.read_until("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
        self.write("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await;
        self.upgrade_tls().await;
        self.read_stream_header().await
    }

    /// The TLS stream, for a test that reads and writes at the same time (split it); bytes
    /// received but not consumed by a `read_until` are dropped.
    pub fn into_tls(mut self) -> TlsStream<TcpStream> {
        *self.tls.take().expect("TLS is up")
    }

    /// Half-closes: TLS close_notify (if TLS) and TCP FIN on the write side; reading goes on.
    pub async fn shutdown_write(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.shutdown().await.expect("shutdown");
        } else {
            self.plain.as_mut().expect("connection").shutdown().await.expect("shutdown");
        }
    }

    /// Drops the connection at once (the kernel sends FIN; no `</stream:stream>`, no close_notify).
    pub fn drop_abruptly(mut self) {
        if let Some(tls) = self.tls.take() {
            let (tcp, _) = tls.into_inner();
            drop(tcp);
        }
    }

    /// Resets the connection (RST) by setting SO_LINGER to zero before closing.
    pub fn reset(mut self) {
        let tcp = match self.tls.take() {
            Some(tls) => tls.into_inner().0,
            None => self.plain.take().expect("connection"),
        };
        let _ = tcp.set_zero_linger();
        drop(tcp);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}
