//! The ending table rendered as the markdown docs/OPERATIONS.md quotes.

use super::table::{Code, Cond, Reason, Refusal, Row, Text, ToClient, ToUpstream, ROWS};
use super::Phase;

/// The table as docs/OPERATIONS.md shows it.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| ending | when | `outcome` | the client gets | the server gets | WebSocket close | also counted |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for row in &ROWS {
        let websocket = match row.websocket {
            None => "none".to_string(),
            Some((code, reason)) => format!("{}, {}", render_code(code), render_reason(reason, row)),
        };
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} | {} | {} | {} |\n",
            row.name,
            row.when,
            row.outcome.label(),
            render_client(row.client),
            render_upstream(row),
            websocket,
            render_counts(row),
        ));
    }
    out
}

fn render_cond(cond: Cond) -> String {
    match cond {
        Cond::Is(condition) => format!("`{}`", condition.as_str()),
        Cond::OfRefusal => "the refusal's condition".to_string(),
        Cond::OfServerFault => {
            "the server's fault (`not-well-formed`, `restricted-xml`, `policy-violation` …)".to_string()
        }
    }
}

fn render_client(client: ToClient) -> String {
    match client {
        ToClient::Nothing => "nothing".to_string(),
        ToClient::Close => "`<close/>`".to_string(),
        ToClient::Error { condition, text } => {
            let text = match text {
                Text::None => String::new(),
                Text::Class => " with the class as `<text/>`".to_string(),
                Text::Is(text) => format!(" with `<text/>` \"{text}\""),
            };
            format!("`<stream:error>` {}{text}, `<close/>`", render_cond(condition))
        }
        ToClient::StartTlsFailure => format!("`{}`, `<close/>`", crate::xml::framing::STARTTLS_FAILURE),
        ToClient::SeeOtherUri => "`<close see-other-uri=\"…\"/>`".to_string(),
    }
}

fn render_upstream(row: &Row) -> String {
    let text = match row.upstream {
        ToUpstream::Nothing => "—",
        ToUpstream::Discard => "the connection being set up is dropped",
        ToUpstream::Finish => "close_notify + FIN, no `</stream:stream>`",
        ToUpstream::FinishWithStreamEnd => "`</stream:stream>`, close_notify + FIN",
        ToUpstream::ErrorThenStreamEnd => {
            "`<stream:error>` with the server's fault, `</stream:stream>`, close_notify + FIN"
        }
        ToUpstream::Abort => {
            "no `</stream:stream>`; close_notify + FIN, then up to 2 s reading until the server closes"
        }
    };
    if row.phase == Phase::Any && row.upstream != ToUpstream::Nothing {
        format!("in the stream: {text}")
    } else {
        text.to_string()
    }
}

fn render_code(code: Code) -> String {
    match code {
        Code::Is(code) => code.to_string(),
        Code::OfRefusal => "1008 (nesting depth) or 1000".to_string(),
        Code::OfViolation => "1002, 1003 or 1007 (RFC 6455 §7.4.1)".to_string(),
    }
}

fn render_reason(reason: Reason, row: &Row) -> String {
    match reason {
        Reason::Is(text) => format!("`{text}`"),
        Reason::Condition => match row.client {
            ToClient::Error { condition: Cond::Is(condition), .. } => format!("`{}`", condition.as_str()),
            _ => "the condition".to_string(),
        },
        Reason::Class => "the class".to_string(),
        Reason::OfViolation => "naming the violation".to_string(),
    }
}

fn render_counts(row: &Row) -> String {
    let mut counts = Vec::new();
    match row.refused {
        Some(Refusal::Is(label)) => counts.push(format!("`client_elements_refused{{{label}}}`")),
        Some(Refusal::OfRefusal) => counts.push("`client_elements_refused{…}` (the refusal's reason)".to_string()),
        None => {}
    }
    match row.gateway_error {
        Some(Cond::Is(condition)) => counts.push(format!("`stream_errors{{{}, gateway}}`", condition.as_str())),
        Some(cond) => counts.push(format!("`stream_errors{{…, gateway}}` for {}", render_cond(cond))),
        None => {}
    }
    if row.connect_failure {
        counts.push("`upstream_connect_failures{class}`".to_string());
    }
    if counts.is_empty() {
        "—".to_string()
    } else {
        counts.join(", ")
    }
}
