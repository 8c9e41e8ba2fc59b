//! A BOSH client at the HTTP level for the tests: one request per connection (`Connection:
//! close`), the answer's status, head and body, and a session's rid bookkeeping.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::STEP;

/// The body namespaces every request declares.
pub const NS: &str = "xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'";

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    /// The body.
    pub body: String,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().to_string())
        })
    }

    /// An attribute of the answer's `<body/>` (double-quoted, as the gateway writes them).
    pub fn attr(&self, name: &str) -> Option<String> {
        let start = self.body.find(&format!(" {name}=\""))? + name.len() + 3;
        let end = start + self.body[start..].find('"')?;
        Some(self.body[start..end].to_string())
    }
}

/// One request on its own connection: `method`, extra header lines, and a body.
pub async fn request(addr: &str, method: &str, headers: &str, body: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let text = format!(
        "{method} /http-bind HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut raw)).await.expect("an answer in time").unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Answer { status, head: head.to_string(), body: body.to_string() }
}

/// A POST of `body`.
pub async fn post(addr: &str, body: &str) -> Answer {
    request(addr, "POST", "", body).await
}

/// A live session: its address, sid and last rid.
pub struct Session {
    /// `host:port`.
    pub addr: String,
    /// The session id.
    pub sid: String,
    /// The last rid sent.
    pub rid: u64,
}

impl Session {
    /// The next request's body, with `attrs` and `children`.
    pub fn next(&mut self, attrs: &str, children: &str) -> String {
        self.rid += 1;
        format!("<body {NS} rid='{}' sid='{}' {attrs}>{children}</body>", self.rid, self.sid)
    }

    /// Sends the next request in a task (it may be held).
    pub fn send(&mut self, attrs: &str, children: &str) -> tokio::task::JoinHandle<Answer> {
        let (addr, body) = (self.addr.clone(), self.next(attrs, children));
        tokio::spawn(async move { post(&addr, &body).await })
    }
}
