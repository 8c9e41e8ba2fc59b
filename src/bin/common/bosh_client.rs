//! A minimal BOSH client (XEP-0124 with XEP-0206) for the load generator: one session over two
//! keep-alive HTTP/1.1 connections, as a browser's BOSH library runs it with `hold='1'`: one
//! request is always waiting at the connection manager for what the server sends, and a second
//! carries what the client sends. Reads only the answers of the gateway under test (one
//! `Content-Length` body per response); not a general HTTP or XML client.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::scan::{find, scan, Scan};

const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
const NS_XBOSH: &str = "urn:xmpp:xbosh";
/// The longest response head or body read (the gateway's are far smaller).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// What the session's task is asked to send.
enum Out {
    Stanza(String),
    Restart,
}

/// One BOSH session. Dropping it stops its task and closes its connections without
/// terminating (as a closed browser tab does).
pub struct BoshClient {
    outgoing: mpsc::UnboundedSender<Out>,
    incoming: mpsc::UnboundedReceiver<io::Result<String>>,
    task: JoinHandle<()>,
}

impl Drop for BoshClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where the sessions go and what they count.
#[derive(Clone)]
pub struct BoshTarget {
    pub address: SocketAddr,
    pub path: String,
    pub domain: String,
    /// Responses received, over every session.
    pub responses: Arc<AtomicU64>,
}

impl BoshTarget {
    /// The target of an `http://ip:port/path` URL (loopback only).
    pub fn from_url(url: &str, domain: &str) -> BoshTarget {
        let rest = url.strip_prefix("http://").expect("the BOSH URL starts with http://");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let address: SocketAddr = authority.parse().expect("the URL's host is an IP address with a port");
        assert!(address.ip().is_loopback(), "the load generator only connects to loopback addresses");
        BoshTarget {
            address,
            path: format!("/{path}"),
            domain: domain.to_owned(),
            responses: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// One keep-alive connection and what it has read of the current response.
struct Connection {
    stream: TcpStream,
    read: Vec<u8>,
    busy: bool,
}

impl Connection {
    async fn open(source: IpAddr, address: SocketAddr) -> io::Result<Connection> {
        let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = socket.connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, read: Vec::new(), busy: false })
    }

    async fn post(&mut self, target: &BoshTarget, body: &str) -> io::Result<()> {
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            target.path,
            target.address,
            body.len()
        );
        self.stream.write_all(request.as_bytes()).await?;
        self.busy = true;
        Ok(())
    }

    /// Reads once; the response body once it is complete. Cancel-safe: what was read stays.
    async fn read_some(&mut self) -> io::Result<Option<String>> {
        if let Some(body) = self.take_response()? {
            return Ok(Some(body));
        }
        let mut chunk = [0u8; 4096];
        let read = self.stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.read.extend_from_slice(&chunk[..read]);
        self.take_response()
    }

    fn take_response(&mut self) -> io::Result<Option<String>> {
        let Some(head_end) = find(&self.read, b"\r\n\r\n") else {
            return if self.read.len() > MAX_RESPONSE_BYTES { Err(error("response head too long")) } else { Ok(None) };
        };
        let head = String::from_utf8_lossy(&self.read[..head_end]).into_owned();
        let status = head.split(' ').nth(1).unwrap_or("");
        if status != "200" {
            return Err(error(format!("HTTP {}", head.lines().next().unwrap_or(""))));
        }
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
            })
            .ok_or_else(|| error("a response without Content-Length"))?;
        if length > MAX_RESPONSE_BYTES {
            return Err(error("response body too long"));
        }
        let start = head_end + 4;
        if self.read.len() < start + length {
            return Ok(None);
        }
        let body = String::from_utf8_lossy(&self.read[start..start + length]).into_owned();
        self.read.drain(..start + length);
        self.busy = false;
        Ok(Some(body))
    }
}

fn error(text: impl Into<String>) -> io::Error {
    io::Error::other(text.into())
}

/// The value of attribute `name` in a start tag (quoted either way).
fn attribute<'t>(tag: &'t str, name: &str) -> Option<&'t str> {
    for quote in ['\'', '"'] {
        let needle = format!(" {name}={quote}");
        if let Some(at) = tag.find(&needle) {
            let rest = &tag[at + needle.len()..];
            return rest.find(quote).map(|end| &rest[..end]);
        }
    }
    None
}

/// A response `<body>`: its start tag and its child elements.
fn children(body: &str) -> io::Result<(String, Vec<String>)> {
    let start = body.find("<body").ok_or_else(|| error("a response without <body>"))?;
    let tag_end = start + body[start..].find('>').ok_or_else(|| error("an unfinished <body> tag"))?;
    let tag = body[start..=tag_end].to_owned();
    if tag.ends_with("/>") {
        return Ok((tag, Vec::new()));
    }
    let inner_end = body.rfind("</body>").ok_or_else(|| error("a <body> without its end tag"))?;
    let mut inner = &body.as_bytes()[tag_end + 1..inner_end];
    let mut elements = Vec::new();
    loop {
        match scan(inner) {
            Scan::Element { skip, len } => {
                elements.push(String::from_utf8_lossy(&inner[skip..skip + len]).into_owned());
                inner = &inner[skip + len..];
            }
            Scan::Incomplete if inner.iter().all(u8::is_ascii_whitespace) => return Ok((tag, elements)),
            Scan::Incomplete | Scan::StreamEnd => return Err(error("a response body that does not parse")),
        }
    }
}

/// Qualifies a stanza by `jabber:client` (XEP-0206: the `<body/>`'s own namespace is
/// httpbind's, so a child without `xmlns` would not be a client stanza).
fn qualified(stanza: &str) -> String {
    let name_end = stanza.find([' ', '>', '/']).unwrap_or(stanza.len());
    let tag_end = stanza.find('>').unwrap_or(stanza.len());
    if stanza[..tag_end].contains("xmlns=") {
        stanza.to_owned()
    } else {
        format!("{} xmlns='jabber:client'{}", &stanza[..name_end], &stanza[name_end..])
    }
}

impl BoshClient {
    /// Creates a session (`hold='1'`, `wait='60'`) from `source`; what the creation response
    /// carried is the first input.
    pub async fn connect(target: &BoshTarget, source: IpAddr) -> io::Result<BoshClient> {
        let mut rid: u64 = 1_000_000 + u64::from(rand_u16());
        let mut first = Connection::open(source, target.address).await?;
        let create = format!(
            "<body content='text/xml; charset=utf-8' hold='1' rid='{rid}' to='{}' ver='1.6' wait='60' \
             xml:lang='en' xmlns='{NS_HTTPBIND}' xmlns:xmpp='{NS_XBOSH}' xmpp:version='1.0'/>",
            target.domain
        );
        first.post(target, &create).await?;
        let body = loop {
            if let Some(body) = first.read_some().await? {
                break body;
            }
        };
        target.responses.fetch_add(1, Ordering::Relaxed);
        let (tag, elements) = children(&body)?;
        if attribute(&tag, "type") == Some("terminate") {
            return Err(error(format!("refused: {}", attribute(&tag, "condition").unwrap_or("no condition"))));
        }
        let sid = attribute(&tag, "sid").ok_or_else(|| error("a creation response without sid"))?.to_owned();
        rid += 1;
        let second = Connection::open(source, target.address).await?;
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        for element in elements {
            let _ = incoming_tx.send(Ok(element));
        }
        let run = Run { target: target.clone(), sid, rid, connections: [first, second], queue: VecDeque::new() };
        let task = tokio::spawn(run.go(outgoing_rx, incoming_tx));
        Ok(BoshClient { outgoing, incoming, task })
    }

    pub fn send(&self, stanza: &str) -> io::Result<()> {
        self.outgoing.send(Out::Stanza(qualified(stanza))).map_err(|_| error("the BOSH session ended"))
    }

    /// Asks for a stream restart (`xmpp:restart='true'`, after SASL success).
    pub fn restart(&self) -> io::Result<()> {
        self.outgoing.send(Out::Restart).map_err(|_| error("the BOSH session ended"))
    }

    /// The next element the server sent.
    pub async fn recv(&mut self) -> io::Result<String> {
        self.incoming.recv().await.unwrap_or_else(|| Err(error("the BOSH session ended")))
    }
}

/// A little entropy for the first rid without another dependency.
fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    (nanos >> 4) as u16
}

/// The session's task: keeps one request waiting at the gateway and sends what is queued.
struct Run {
    target: BoshTarget,
    sid: String,
    rid: u64,
    connections: [Connection; 2],
    queue: VecDeque<Out>,
}

impl Run {
    async fn go(
        mut self,
        mut outgoing: mpsc::UnboundedReceiver<Out>,
        incoming: mpsc::UnboundedSender<io::Result<String>>,
    ) {
        if let Err(e) = self.serve(&mut outgoing, &incoming).await {
            let _ = incoming.send(Err(e));
        }
    }

    async fn serve(
        &mut self,
        outgoing: &mut mpsc::UnboundedReceiver<Out>,
        incoming: &mpsc::UnboundedSender<io::Result<String>>,
    ) -> io::Result<()> {
        loop {
            self.send_requests().await?;
            let [first, second] = &mut self.connections;
            let body = tokio::select! {
                out = outgoing.recv() => {
                    match out {
                        Some(out) => self.queue.push_back(out),
                        None => return Ok(()),
                    }
                    continue;
                }
                body = first.read_some(), if first.busy => body?,
                body = second.read_some(), if second.busy => body?,
            };
            let Some(body) = body else { continue };
            self.target.responses.fetch_add(1, Ordering::Relaxed);
            let (tag, elements) = children(&body)?;
            for element in elements {
                let _ = incoming.send(Ok(element));
            }
            if attribute(&tag, "type") == Some("terminate") {
                return Err(error(format!("terminated: {}", attribute(&tag, "condition").unwrap_or("no condition"))));
            }
        }
    }

    /// Sends what is queued on an idle connection, or an empty request when none is waiting.
    async fn send_requests(&mut self) -> io::Result<()> {
        let busy = self.connections.iter().filter(|c| c.busy).count();
        if busy == 2 || (busy == 1 && self.queue.is_empty()) {
            return Ok(());
        }
        let mut children = String::new();
        let mut restart = false;
        while let Some(out) = self.queue.pop_front() {
            match out {
                Out::Stanza(stanza) => children.push_str(&stanza),
                // A restart request carries nothing else.
                Out::Restart if children.is_empty() => {
                    restart = true;
                    break;
                }
                Out::Restart => {
                    self.queue.push_front(Out::Restart);
                    break;
                }
            }
        }
        let (rid, sid) = (self.rid, &self.sid);
        self.rid += 1;
        let body = if restart {
            format!(
                "<body rid='{rid}' sid='{sid}' to='{}' xml:lang='en' xmpp:restart='true' xmlns='{NS_HTTPBIND}' \
                 xmlns:xmpp='{NS_XBOSH}'/>",
                self.target.domain
            )
        } else if children.is_empty() {
            format!("<body rid='{rid}' sid='{sid}' xmlns='{NS_HTTPBIND}'/>")
        } else {
            format!("<body rid='{rid}' sid='{sid}' xmlns='{NS_HTTPBIND}'>{children}</body>")
        };
        let idle = self.connections.iter_mut().find(|c| !c.busy).expect("a connection is idle");
        idle.post(&self.target, &body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_bodies_give_their_tag_and_children() {
        let (tag, elements) = children("<body sid='s1' xmlns='x'><message a='1'><b/></message> <iq/></body>").unwrap();
        assert_eq!(attribute(&tag, "sid"), Some("s1"));
        assert_eq!(elements, ["<message a='1'><b/></message>", "<iq/>"]);
        let (tag, elements) = children(r#"<body type="terminate" condition="item-not-found" xmlns="x"/>"#).unwrap();
        assert_eq!(
            (attribute(&tag, "type"), attribute(&tag, "condition")),
            (Some("terminate"), Some("item-not-found"))
        );
        assert!(elements.is_empty());
        assert!(children("<body><message>").is_err());
    }

    #[test]
    fn stanzas_are_qualified_once() {
        assert_eq!(qualified("<message to='a'/>"), "<message xmlns='jabber:client' to='a'/>");
        assert_eq!(qualified("<presence/>"), "<presence xmlns='jabber:client'/>");
        let auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AA==</auth>";
        assert_eq!(qualified(auth), auth);
    }
}
