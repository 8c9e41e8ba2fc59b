//! The response bodies of the connection manager (XEP-0124 §7, §8, §17; XEP-0206 §3–§5).
//! Every body declares the httpbind, `xmpp` (urn:xmpp:xbosh) and `stream` namespaces, so that
//! `<stream:features/>` and `<stream:error/>` children are in scope however they are written.

use super::super::framing::push_attr;
use super::super::NS_STREAM;
use super::{NS_HTTPBIND, NS_XBOSH};

/// The attributes of a session creation response (XEP-0124 §7.1, XEP-0206 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created<'a> {
    /// The session id.
    pub sid: &'a str,
    /// `wait`, seconds: the longest a request is held.
    pub wait: u64,
    /// `requests`: how many requests may be pending (hold + 1).
    pub requests: u64,
    /// `hold`: how many requests are held at most.
    pub hold: u64,
    /// `inactivity`, seconds.
    pub inactivity: u64,
    /// `polling`, seconds: the shortest time between two empty requests when hold is 0.
    pub polling: u64,
    /// `maxpause`, seconds.
    pub maxpause: u64,
    /// `ver`: the highest version the connection manager speaks that the client asked for.
    pub ver: &'a str,
    /// `from`: the domain the client asked for, as the server's stream header says it.
    pub from: &'a str,
    /// `authid`: the server's stream id.
    pub authid: &'a str,
    /// `xmpp:version` of the server's stream header, if any.
    pub xmpp_version: Option<&'a str>,
}

fn open(out: &mut String) {
    out.push_str("<body xmlns=\"");
    out.push_str(NS_HTTPBIND);
    out.push_str("\" xmlns:xmpp=\"");
    out.push_str(NS_XBOSH);
    out.push_str("\" xmlns:stream=\"");
    out.push_str(NS_STREAM);
    out.push('"');
}

fn attr(out: &mut String, name: &str, value: &str) {
    push_attr(out, name, Some(value), '"');
}

fn close(out: &mut String, children: &[String]) {
    if children.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for child in children {
        out.push_str(child);
    }
    out.push_str("</body>");
}

fn capacity(children: &[String]) -> usize {
    256 + children.iter().map(String::len).sum::<usize>()
}

impl Created<'_> {
    /// The session creation response, with the children that are ready (the features).
    pub fn body(&self, children: &[String]) -> String {
        let mut out = String::with_capacity(capacity(children) + 256);
        open(&mut out);
        attr(&mut out, "sid", self.sid);
        for (name, value) in [
            ("wait", self.wait),
            ("requests", self.requests),
            ("hold", self.hold),
            ("inactivity", self.inactivity),
            ("polling", self.polling),
            ("maxpause", self.maxpause),
        ] {
            attr(&mut out, name, &value.to_string());
        }
        attr(&mut out, "ver", self.ver);
        attr(&mut out, "from", self.from);
        attr(&mut out, "authid", self.authid);
        if let Some(version) = self.xmpp_version {
            attr(&mut out, "xmpp:version", version);
        }
        attr(&mut out, "xmpp:restartlogic", "true");
        close(&mut out, children);
        out
    }
}

/// An ordinary response: the children, or an empty body.
pub fn with_children(children: &[String]) -> String {
    let mut out = String::with_capacity(capacity(children));
    open(&mut out);
    close(&mut out, children);
    out
}

/// An empty response (`<body/>`): a held request whose wait ran out, or an answer to a request
/// that another held one made redundant.
pub fn empty() -> String {
    with_children(&[])
}

/// A terminating response (XEP-0124 §13, §17.2): `type='terminate'`, the condition if any,
/// and the children (the stanzas that were still queued, a `<stream:error/>` for
/// `remote-stream-error`, a `<uri/>` for `see-other-uri`).
pub fn terminate(condition: Option<&str>, children: &[String]) -> String {
    let mut out = String::with_capacity(capacity(children));
    open(&mut out);
    attr(&mut out, "type", "terminate");
    if let Some(condition) = condition {
        attr(&mut out, "condition", condition);
    }
    close(&mut out, children);
    out
}
