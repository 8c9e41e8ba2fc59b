//! The byte stream to the upstream server: plain TCP or TLS over TCP, behind one type.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// An established upstream byte stream.
#[derive(Debug)]
pub enum UpstreamIo {
    /// Plain TCP (only with `tls = "none"`).
    Plain(TcpStream),
    /// TLS, after STARTTLS or direct.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            UpstreamIo::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            UpstreamIo::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(stream) => Pin::new(stream).poll_flush(cx),
            UpstreamIo::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            UpstreamIo::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::{PrivateKeyDer, ServerName};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::UpstreamIo;

    /// A server configuration for `name` and a client configuration trusting it only.
    fn configs(name: &str) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let leaf_params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("leaf parameters");
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()))
            .expect("server configuration");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).expect("trust the CA");
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// Several records that arrive together come out of one read of the byte stream, as the same
    /// bytes would over plain TCP: each read is one turn of the session loop and one client
    /// flush, so a TLS upstream costs no more of them than a plain one. tokio-rustls 0.26's
    /// client stream does this (it fills the buffer from every record rustls has); this test
    /// keeps it that way across upgrades (docs/PERFORMANCE.md, "Issue 13: STARTTLS beside the floor").
    #[tokio::test]
    async fn one_read_takes_every_record_that_came_in_together() {
        let (server_config, client_config) = configs("io.test");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut tls = tokio_rustls::TlsAcceptor::from(server_config).accept(tcp).await.expect("server handshake");
            // Three records (one per write to the connection), sent in one socket write.
            for element in ["<a/>", "<b/>", "<c/>"] {
                std::io::Write::write_all(&mut tls.get_mut().1.writer(), element.as_bytes()).expect("queue a record");
            }
            tls.flush().await.expect("send the records");
            // Held open until the client has read, so the read ends with the records, not EOF.
            let mut rest = Vec::new();
            let _ = tls.read_to_end(&mut rest).await;
        });
        let tcp = TcpStream::connect(address).await.expect("connect");
        let name = ServerName::try_from("io.test").expect("name");
        let mut tls =
            tokio_rustls::TlsConnector::from(client_config).connect(name, tcp).await.expect("client handshake");
        // The premise: these are separate records, rustls hands over the first one alone.
        assert_eq!(tls.fill_buf().await.expect("first record"), b"<a/>");
        let mut io = UpstreamIo::Tls(Box::new(tls));
        let mut buf = [0u8; 4096];
        let read = io.read(&mut buf).await.expect("read");
        assert_eq!(std::str::from_utf8(&buf[..read]).expect("UTF-8"), "<a/><b/><c/>");
        drop(io);
        server.await.expect("server task");
    }
}
