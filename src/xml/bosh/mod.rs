//! BOSH wire format (XEP-0124, XEP-0206), with no I/O: one request `<body/>` parsed within
//! bounds into its attributes and its children, each child a standalone element the session
//! core accepts exactly as it accepts one WebSocket message; and the response bodies built.
//!
//! Every byte of a request is read once by the one [`Checker`]: the body's start tag, then each
//! child in the body's namespace scope, then the end tag. A child that relies on the body's
//! declarations gets them written onto its own start tag, the default namespace of the body
//! (httpbind) written as `jabber:client` (XEP-0206 §3 notes that clients leave the stanza
//! namespace out). What the children say is the core's business, never this module's.

mod output;
mod response;
#[cfg(test)]
mod tests;

pub use output::{core_output, terminal_condition, CoreOutput};
pub use response::{empty, terminate, with_children, Created};

use super::checker::{Checker, Progress, RootAttr, RootDeclaration, Unit, WfLimits};
use super::error::XmlError;
use super::scope::Inherited;
use super::NS_CLIENT;

/// `http://jabber.org/protocol/httpbind`, the namespace of `<body/>`.
pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
/// `urn:xmpp:xbosh`, the namespace of XEP-0206's attributes (`xmpp:version`, `xmpp:restart`).
pub const NS_XBOSH: &str = "urn:xmpp:xbosh";

/// What a request body may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Bytes of the whole body (the HTTP layer refuses more before buffering it).
    pub max_body_bytes: usize,
    /// Child elements of one body.
    pub max_children: usize,
    /// Nesting depth inside one child (the child itself is depth 1), as for one WebSocket message.
    pub max_depth: usize,
    /// Attributes on one start tag, namespace declarations included.
    pub max_attributes: usize,
    /// Namespace declarations on one start tag.
    pub max_namespace_declarations: usize,
}

/// Why a request body was refused: answered with the `bad-request` terminal condition, or,
/// for a limit, `policy-violation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not XML, not one `<body/>` in the httpbind namespace, or an attribute value that is not
    /// what XEP-0124 allows.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The XML checker refused it.
    #[error("{0}")]
    Xml(XmlError),
    /// More children than [`BodyLimits::max_children`].
    #[error("too many child elements")]
    TooManyChildren,
}

impl BodyError {
    /// The XEP-0124 §17.2 terminal condition that answers it.
    pub fn condition(self) -> &'static str {
        match self {
            BodyError::Xml(error) if error.is_limit() => "policy-violation",
            BodyError::TooManyChildren => "policy-violation",
            _ => "bad-request",
        }
    }
}

impl From<XmlError> for BodyError {
    fn from(error: XmlError) -> Self {
        BodyError::Xml(error)
    }
}

/// The `type` attribute of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    /// No `type`: an ordinary request.
    #[default]
    Normal,
    /// `type='terminate'`: the client ends the session (XEP-0124 §13).
    Terminate,
}

/// One parsed request: the attributes the connection manager uses, and the children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyRequest {
    /// `rid`: present and a positive integer below 2^53 (XEP-0124 §14); checked here.
    pub rid: u64,
    /// `sid`: absent on a session creation request.
    pub sid: Option<String>,
    /// `to`: the domain (session creation).
    pub to: Option<String>,
    /// `route` (session creation; the gateway does not honour it: the domain decides the route).
    pub route: Option<String>,
    /// `wait`, seconds (session creation).
    pub wait: Option<u64>,
    /// `hold` (session creation).
    pub hold: Option<u64>,
    /// `ver` (session creation).
    pub ver: Option<String>,
    /// `xml:lang` (session creation).
    pub lang: Option<String>,
    /// `from` (session creation, or a restart).
    pub from: Option<String>,
    /// `xmpp:version` (session creation, XEP-0206).
    pub xmpp_version: Option<String>,
    /// `xmpp:restart='true'` (XEP-0206 §5).
    pub restart: bool,
    /// `type`.
    pub kind: BodyType,
    /// `pause`, seconds (XEP-0124 §10).
    pub pause: Option<u64>,
    /// The child elements, each one standalone element (namespace-complete).
    pub children: Vec<String>,
}

/// Parses one request body within `limits`.
pub fn parse(text: &str, limits: &BodyLimits) -> Result<BodyRequest, BodyError> {
    if text.len() > limits.max_body_bytes {
        return Err(XmlError::TooLarge.into());
    }
    let wf = WfLimits {
        max_depth: limits.max_depth,
        max_attributes: limits.max_attributes,
        max_namespace_declarations: limits.max_namespace_declarations,
    };
    let bytes = text.as_bytes();
    let start = skip_space(bytes, 0);
    if bytes.get(start) != Some(&b'<') {
        return Err(BodyError::BadRequest("not one <body/> element"));
    }
    let mut checker = Checker::new(wf, Unit::Header);
    checker.reset(Unit::Header);
    let head = &bytes[start..];
    if checker.advance(head, None)? != Progress::Done {
        return Err(XmlError::NotWellFormed("a partial element").into());
    }
    let head_text = &text[start..];
    if checker.root_ns(None) != Some(NS_HTTPBIND) || checker.root_local(head_text) != "body" {
        return Err(BodyError::BadRequest("the root is not <body/> in the httpbind namespace"));
    }
    let qname = checker.root_qname(head_text).to_owned();
    let (attrs, declarations) = checker.root_attrs(head_text, WANTED, true)?;
    let mut request = attributes(&attrs, &declarations)?;
    let mut pos = start + checker.end();
    if !checker.root_empty() {
        let inherited = Inherited::new(declarations);
        checker.reset(Unit::Element);
        loop {
            pos = skip_space(bytes, pos);
            let rest = &bytes[pos..];
            if rest.starts_with(b"</") {
                pos = end_tag(bytes, pos + 2, &qname)?;
                break;
            }
            if rest.first() != Some(&b'<') {
                return Err(BodyError::BadRequest("text in <body/>"));
            }
            if request.children.len() == limits.max_children {
                return Err(BodyError::TooManyChildren);
            }
            checker.reset(Unit::Element);
            if checker.advance(rest, Some(&inherited))? != Progress::Done {
                return Err(XmlError::NotWellFormed("a partial element").into());
            }
            let end = pos + checker.end();
            request.children.push(standalone(&text[pos..end], &checker, &inherited));
            pos = end;
        }
    }
    if skip_space(bytes, pos) != bytes.len() {
        return Err(XmlError::NotWellFormed("data after </body>").into());
    }
    Ok(request)
}

/// The attributes [`parse`] reads (raw names: `xmpp` is the prefix every client uses, and the
/// declaration is checked).
const WANTED: &[&str] = &[
    "rid",
    "sid",
    "to",
    "route",
    "wait",
    "hold",
    "ver",
    "xml:lang",
    "from",
    "xmpp:version",
    "xmpp:restart",
    "type",
    "pause",
];

fn attributes(attrs: &[RootAttr], declarations: &[RootDeclaration]) -> Result<BodyRequest, BodyError> {
    let xmpp_bound = declarations.iter().rev().find(|(prefix, _)| *prefix == Some("xmpp"));
    let mut request = BodyRequest::default();
    let mut rid = None;
    for (name, value) in attrs {
        if name.starts_with("xmpp:") && xmpp_bound.map(|(_, uri)| uri.as_ref()) != Some(NS_XBOSH) {
            // Another namespace's attribute with the same prefix: not ours.
            continue;
        }
        match *name {
            "rid" => {
                rid = Some(number(value).filter(|rid| (1..1 << 53).contains(rid)).ok_or(BodyError::BadRequest("rid"))?)
            }
            "sid" => request.sid = Some(value.to_string()),
            "to" => request.to = Some(value.to_string()),
            "route" => request.route = Some(value.to_string()),
            "wait" => request.wait = Some(number(value).ok_or(BodyError::BadRequest("wait"))?),
            "hold" => request.hold = Some(number(value).ok_or(BodyError::BadRequest("hold"))?),
            "pause" => request.pause = Some(number(value).ok_or(BodyError::BadRequest("pause"))?),
            "ver" => request.ver = Some(value.to_string()),
            "xml:lang" => request.lang = Some(value.to_string()),
            "from" => request.from = Some(value.to_string()),
            "xmpp:version" => request.xmpp_version = Some(value.to_string()),
            "xmpp:restart" => request.restart = matches!(value.as_ref(), "true" | "1"),
            "type" => {
                request.kind = match value.as_ref() {
                    "terminate" => BodyType::Terminate,
                    _ => return Err(BodyError::BadRequest("type")),
                }
            }
            _ => {}
        }
    }
    request.rid = rid.ok_or(BodyError::BadRequest("no rid"))?;
    Ok(request)
}

/// A decimal number of at most 16 digits (rid is below 2^53; waits and holds are small).
fn number(value: &str) -> Option<u64> {
    (!value.is_empty() && value.len() <= 16 && value.bytes().all(|b| b.is_ascii_digit()))
        .then(|| value.parse().ok())
        .flatten()
}

fn skip_space(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
        pos += 1;
    }
    pos
}

/// The end tag of `<body>` from its name at `pos`; the position after its `>`.
fn end_tag(bytes: &[u8], pos: usize, qname: &str) -> Result<usize, BodyError> {
    let name_end = pos + qname.len();
    if bytes.get(pos..name_end) != Some(qname.as_bytes()) {
        return Err(XmlError::NotWellFormed("mismatched end tag").into());
    }
    let close = skip_space(bytes, name_end);
    if bytes.get(close) != Some(&b'>') {
        return Err(XmlError::NotWellFormed("mismatched end tag").into());
    }
    Ok(close + 1)
}

/// `child` as a standalone element: the body's declarations it uses written onto its start tag
/// (after its name), the body's default namespace as `jabber:client`.
fn standalone(child: &str, checker: &Checker, inherited: &Inherited) -> String {
    let used = checker.inherited_used();
    if used.len() == 0 {
        return child.to_owned();
    }
    let name_end = child[1..].find([' ', '\t', '\r', '\n', '/', '>']).map_or(child.len(), |i| i + 1);
    let mut out = String::with_capacity(child.len() + 64);
    out.push_str(&child[..name_end]);
    for i in used.iter() {
        let (prefix, uri) = (inherited.prefix(i), inherited.uri(i));
        match prefix {
            None => {
                let uri = if uri == NS_HTTPBIND { NS_CLIENT } else { uri };
                out.push_str(" xmlns=\"");
                super::framing::escape_attr(&mut out, uri, '"');
            }
            Some(prefix) => {
                out.push_str(" xmlns:");
                out.push_str(prefix);
                out.push_str("=\"");
                super::framing::escape_attr(&mut out, uri, '"');
            }
        }
        out.push('"');
    }
    out.push_str(&child[name_end..]);
    out
}
