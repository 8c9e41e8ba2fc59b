//! What the splitter does with a complete unit: the stream header checked and read (with the
//! declarations later elements inherit), and a top-level element checked in the header's scope,
//! namespace-completed (NS-1, NS-3) and classified. Called by the lexer in the parent module.

use super::super::condition::StreamCondition;
use super::super::error::XmlError;
use super::super::framing::escape_attr;
use super::super::scope::Inherited;
use super::super::wf::{self, WfLimits};
use super::super::{NS_SASL, NS_STREAM, NS_TLS};
use super::{is_space, ServerElement, ServerElementKind, SplitterLimits, StreamHeader};

/// What the rest of the stream needs from the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HeaderScope {
    /// The header's qualified name, which the stream end tag must repeat.
    pub(super) qname: String,
    /// The header's namespace declarations, in document order, indexed.
    inherited: Inherited,
    /// Each of `bindings` written out as namespace completion adds it (` xmlns:p="uri"`), made
    /// once per stream instead of once per element.
    declarations: Vec<String>,
}

/// The qualified name at the start of a tag (`bytes` starts with `<`).
fn tag_qname(tag: &str) -> &str {
    let rest = &tag[1..];
    let end = rest.find(|c: char| (c.is_ascii() && is_space(c as u8)) || c == '/' || c == '>').unwrap_or(rest.len());
    &rest[..end]
}

/// Checks the header start tag (`<` to `>`) and extracts what the gateway needs.
pub(super) fn parse_header(tag: &[u8], limits: &SplitterLimits) -> Result<(StreamHeader, HeaderScope), XmlError> {
    let tag = std::str::from_utf8(tag).map_err(|_| XmlError::NotWellFormed("invalid UTF-8"))?;
    // Checked as the empty element the start tag would be on its own.
    let doc = format!("{}/>", &tag[..tag.len() - 1]);
    let info = wf::check_element(&doc, &WfLimits { max_depth: 1, ..limits.wf() })?;
    if info.ns.as_deref() != Some(NS_STREAM) || info.local != "stream" {
        return Err(XmlError::InvalidNamespace("the stream header is not a stream in the stream namespace"));
    }
    let ns_decls = info.ns_decls()?;
    let mut header = StreamHeader { namespaces: ns_decls.clone(), ..StreamHeader::default() };
    for (name, value) in info.attrs()? {
        match name.as_str() {
            "from" => header.from = Some(value),
            "to" => header.to = Some(value),
            "id" => header.id = Some(value),
            "version" => header.version = Some(value),
            "xml:lang" => header.lang = Some(value),
            _ => {}
        }
    }
    let declarations = ns_decls
        .iter()
        .map(|(prefix, uri)| {
            let mut text = String::new();
            push_declaration(&mut text, prefix.as_deref(), uri);
            text
        })
        .collect();
    let scope = HeaderScope { qname: tag_qname(tag).to_owned(), inherited: Inherited::new(ns_decls), declarations };
    Ok((header, scope))
}

/// Namespace completion of one top-level element (`raw`, whose start tag's `>` is at
/// `tag_end`), then the full check and the classification.
///
/// `raw` is checked in the scope of the header's declarations (what is checked is what is
/// relayed: the declarations added below are the header's, already checked). Every header
/// binding that a name in the element resolves to is then added right after the element name,
/// as `xmlns="..."`/`xmlns:p="..."` (double quotes, `&`, `<`, `"` escaped, NS-1), in the
/// header's order; bindings the element does not use are not added, so the output is at most
/// the element plus the header's declarations, never a copy of them per unused prefix. An
/// element in the stream namespace is renamed to the `stream` prefix (start and end tag of the
/// top-level element only) with `xmlns:stream` declared (NS-3). When `stream` is bound to
/// another namespace on the element or the header, renaming would change the meaning of
/// descendants, so the element keeps its original prefix, which is declared like any other.
/// `xml:lang` is not pushed down (D7).
pub(super) fn complete_element(
    raw: &str,
    tag_end: usize,
    scope: &HeaderScope,
    limits: &SplitterLimits,
) -> Result<ServerElement, XmlError> {
    let (info, mut used) = wf::check_in_scope(raw, &limits.wf(), Some(&scope.inherited))?;
    let qname = tag_qname(raw);
    let name_end = 1 + qname.len();
    let prefix = qname.split_once(':').map(|(p, _)| p);
    let self_closing = raw[..=tag_end].ends_with("/>");
    let end_name_at = if self_closing {
        None
    } else {
        // The last `</` of an element is its own end tag (no `</` can follow it).
        raw.rfind("</").map(|i| i + 2).filter(|&i| {
            raw[i..].starts_with(qname)
                && raw[i + qname.len()..].starts_with(|c: char| c == '>' || (c.is_ascii() && is_space(c as u8)))
        })
    };
    let in_stream_ns = info.ns.as_deref() == Some(NS_STREAM) && prefix != Some("stream");
    let mut rename = false;
    let mut declare_stream = false;
    if in_stream_ns && (self_closing || end_name_at.is_some()) {
        // Only stream elements (features, errors) get here: reading the root's declarations
        // again is cheap and rare.
        let own = info.ns_decls()?;
        let own_stream = own.iter().find(|(p, _)| p.as_deref() == Some("stream")).map(|(_, uri)| uri.as_str());
        let bindings = scope.inherited.bindings();
        let header_stream = bindings.iter().position(|(p, _)| p.as_deref() == Some("stream"));
        let header_stream_uri = header_stream.map(|i| bindings[i].1.as_str());
        rename = own_stream.unwrap_or(NS_STREAM) == NS_STREAM
            && (own_stream.is_some() || header_stream_uri.unwrap_or(NS_STREAM) == NS_STREAM);
        if rename && own_stream.is_none() {
            match header_stream {
                Some(i) => {
                    if let Err(at) = used.binary_search(&i) {
                        used.insert(at, i);
                    }
                }
                None => declare_stream = true,
            }
        }
    }

    // The caps apply to what is relayed: the declarations added count on the root's start tag.
    let added = used.len() + usize::from(declare_stream);
    if info.attributes + added > limits.max_attributes {
        return Err(XmlError::TooManyAttributes);
    }
    if info.declarations + added > limits.max_namespace_declarations {
        return Err(XmlError::TooManyNamespaceDeclarations);
    }
    let added: usize = used.iter().map(|&i| scope.declarations[i].len()).sum();
    let mut out = String::with_capacity(raw.len() + added + 48);
    out.push('<');
    if rename {
        out.push_str("stream:");
        out.push_str(info.local);
        if declare_stream {
            push_declaration(&mut out, Some("stream"), NS_STREAM);
        }
    } else {
        out.push_str(qname);
    }
    for &i in &used {
        out.push_str(&scope.declarations[i]);
    }
    match (rename, end_name_at) {
        (true, Some(at)) => {
            out.push_str(&raw[name_end..at]);
            out.push_str("stream:");
            out.push_str(info.local);
            out.push_str(&raw[at + qname.len()..]);
        }
        _ => out.push_str(&raw[name_end..]),
    }

    let kind = match (info.ns.as_deref(), info.local) {
        (Some(NS_STREAM), "features") => ServerElementKind::Features,
        (Some(NS_STREAM), "error") => ServerElementKind::StreamError,
        (Some(NS_TLS), "proceed") => ServerElementKind::TlsProceed,
        (Some(NS_TLS), "failure") => ServerElementKind::TlsFailure,
        (Some(NS_SASL), "success") => ServerElementKind::SaslSuccess,
        _ => ServerElementKind::Other,
    };
    let (mut error_condition, mut see_other_host) = (None, None);
    if kind == ServerElementKind::StreamError {
        let (condition, text) = info.error_child.unwrap_or_default();
        let condition = StreamCondition::from_name(&condition);
        if condition == StreamCondition::SeeOtherHost {
            see_other_host = Some(text.trim().to_owned());
        }
        error_condition = Some(condition);
    }
    Ok(ServerElement { xml: out, kind, error_condition, see_other_host })
}

/// Appends ` xmlns="uri"` or ` xmlns:prefix="uri"`, the URI escaped for double quotes.
fn push_declaration(out: &mut String, prefix: Option<&str>, uri: &str) {
    out.push_str(" xmlns");
    if let Some(prefix) = prefix {
        out.push(':');
        out.push_str(prefix);
    }
    out.push_str("=\"");
    escape_attr(out, uri, '"');
    out.push('"');
}
