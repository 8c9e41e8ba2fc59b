//! A WebSocket client that writes and reads frames by hand, so tests can send what no
//! well-behaved library sends (binary, fragmented with pings between, invalid UTF-8, unmasked,
//! oversized) and see exactly what the gateway answers (close codes a library would reject).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ws_client::upgrade_request;
use super::STEP;

/// Frame opcodes (RFC 6455 §5.2).
pub mod opcode {
    /// Continuation.
    pub const CONTINUATION: u8 = 0x0;
    /// Text.
    pub const TEXT: u8 = 0x1;
    /// Binary.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// One frame received from the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Whether the MASK bit was set (a server must never set it).
    pub masked: bool,
    /// Payload (unmasked).
    pub payload: Vec<u8>,
}

impl Frame {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// For a Close frame: the status code.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == opcode::CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A raw client connection after a successful upgrade.
pub struct RawWs {
    stream: TcpStream,
    pending: Vec<u8>,
}

/// Encodes one client frame; `mask` = None sends it unmasked (a protocol violation).
pub fn encode(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | op];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        len if len < 126 => frame.push(mask_bit | len as u8),
        len if len <= u16::MAX as usize => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ key[i % 4]));
        }
        None => frame.extend_from_slice(payload),
    }
    frame
}

const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

impl RawWs {
    /// Connects to `url` (`ws://host:port/path`) and upgrades with the `xmpp` subprotocol.
    pub async fn connect(url: &str) -> RawWs {
        Self::connect_with_headers(url, "Sec-WebSocket-Protocol: xmpp\r\n").await
    }

    /// Like [`Self::connect`] with these header lines (each ending in CRLF) instead.
    pub async fn connect_with_headers(url: &str, headers: &str) -> RawWs {
        let host = url.trim_start_matches("ws://").split_once('/').expect("ws://host/path").0;
        let stream = TcpStream::connect(host).await.expect("connect");
        Self::upgrade(stream, url, headers).await
    }

    /// Upgrades an already connected `stream` (e.g. one bound to another loopback source address
    /// or with small socket buffers) to a WebSocket on `url`, with these header lines.
    pub async fn upgrade(mut stream: TcpStream, url: &str, headers: &str) -> RawWs {
        let (host, path) = url.trim_start_matches("ws://").split_once('/').expect("ws://host/path");
        stream.write_all(upgrade_request(host, &format!("/{path}"), headers).as_bytes()).await.expect("write upgrade");
        let mut raw = RawWs { stream, pending: Vec::new() };
        let head = raw.read_until_head().await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        raw
    }

    async fn read_until_head(&mut self) -> String {
        let mut buf = [0u8; 1024];
        loop {
            if let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = self.pending.split_off(end + 4);
                let head = std::mem::replace(&mut self.pending, rest);
                return String::from_utf8_lossy(&head).into_owned();
            }
            let n = tokio::time::timeout(STEP, self.stream.read(&mut buf)).await.expect("head in time").expect("read");
            assert!(n > 0, "closed during the handshake");
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    /// Writes raw bytes.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Writes raw bytes; an error (the gateway closed or reset the connection) is returned.
    pub async fn try_write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Sends one masked frame.
    pub async fn send_frame(&mut self, fin: bool, op: u8, payload: &[u8]) {
        self.write_raw(&encode(fin, op, payload, MASK)).await;
    }

    /// Sends one complete masked text message.
    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(true, opcode::TEXT, text.as_bytes()).await;
    }

    async fn fill(&mut self, wanted: usize) -> bool {
        let mut buf = [0u8; 4096];
        while self.pending.len() < wanted {
            match tokio::time::timeout(STEP, self.stream.read(&mut buf)).await.expect("frame in time") {
                Ok(0) | Err(_) => return false,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
        true
    }

    /// The next frame, or None when the connection ended.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        if !self.fill(2).await {
            return None;
        }
        let (b0, b1) = (self.pending[0], self.pending[1]);
        let masked = b1 & 0x80 != 0;
        let mut header = 2;
        let mut len = (b1 & 0x7f) as usize;
        if len == 126 {
            if !self.fill(4).await {
                return None;
            }
            len = u16::from_be_bytes([self.pending[2], self.pending[3]]) as usize;
            header = 4;
        } else if len == 127 {
            if !self.fill(10).await {
                return None;
            }
            len = u64::from_be_bytes(self.pending[2..10].try_into().expect("8 bytes")) as usize;
            header = 10;
        }
        let key_len = if masked { 4 } else { 0 };
        if !self.fill(header + key_len + len).await {
            return None;
        }
        let mut payload = self.pending[header + key_len..header + key_len + len].to_vec();
        if masked {
            let key: [u8; 4] = self.pending[header..header + 4].try_into().expect("4 bytes");
            payload.iter_mut().enumerate().for_each(|(i, byte)| *byte ^= key[i % 4]);
        }
        self.pending.drain(..header + key_len + len);
        Some(Frame { fin: b0 & 0x80 != 0, opcode: b0 & 0x0f, masked, payload })
    }

    /// The next text message payload; panics on anything else.
    pub async fn recv_text(&mut self) -> String {
        let frame = self.next_frame().await.expect("a frame");
        assert_eq!(frame.opcode, opcode::TEXT, "expected text, got {frame:?}");
        assert!(!frame.masked, "server frames must not be masked");
        frame.text()
    }

    /// Skips text frames until a Close frame; returns its code (None if the connection ended
    /// without one) and the texts skipped.
    pub async fn until_close(&mut self) -> (Option<u16>, Vec<String>) {
        let mut texts = Vec::new();
        while let Some(frame) = self.next_frame().await {
            match frame.opcode {
                opcode::CLOSE => return (frame.close_code(), texts),
                opcode::TEXT => texts.push(frame.text()),
                _ => {}
            }
        }
        (None, texts)
    }
}
