//! The ending table: one row per ending, rows consistent with where they can happen, the
//! farewell following its row, and docs/OPERATIONS.md quoting it exactly.

use crate::upstream::{FailureClass, TcpFailure};
use crate::xml::condition::StreamCondition;
use crate::xml::error::XmlError;

use super::*;
use ending::{Code, Cond, Site, ToClient, ToUpstream, Voice};

/// One ending of every kind, with example values for their fields.
pub(super) fn examples() -> Vec<Ending> {
    vec![
        Ending::OpenTimeout,
        Ending::CloseBeforeOpen,
        Ending::NotOpen,
        Ending::Refused(XmlError::TooDeep),
        Ending::NoDomain,
        Ending::DomainNotServed { class: FailureClass::DomainNotAllowed },
        Ending::QueueFull,
        Ending::UpstreamFailed { class: FailureClass::Tcp(TcpFailure::Refused) },
        Ending::TooBig,
        Ending::WebSocketViolation { code: 1003, reason: "text frames only (RFC 7395 3.2)" },
        Ending::ClientVanished,
        Ending::ClientStalled,
        Ending::Drained,
        Ending::Redirected,
        Ending::UnexpectedOpen,
        Ending::RestartElsewhere,
        Ending::ElementAfterClose,
        Ending::ClientStartTls,
        Ending::Closed,
        Ending::ClosedAfterServerError { condition: StreamCondition::Conflict },
        Ending::CloseTimeout,
        Ending::ServerBadXml(XmlError::RestrictedXml("comment")),
        Ending::ServerVanished,
        Ending::PongTimeout,
        Ending::IdleTimeout,
    ]
}

#[test]
fn every_ending_has_its_own_row() {
    let indices: Vec<usize> = examples().iter().map(Ending::index).collect();
    assert_eq!(indices, (0..ROWS.len()).collect::<Vec<_>>());
    let mut names: Vec<&str> = ROWS.iter().map(|row| row.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ROWS.len(), "row names are unique");
}

#[test]
fn rows_are_consistent_with_where_they_happen() {
    for (ending, row) in examples().iter().zip(ROWS.iter()) {
        let before_only = matches!(row.upstream, ToUpstream::Nothing | ToUpstream::Discard);
        assert_eq!(before_only, row.phase == Phase::BeforeStream, "{}: upstream column vs phase", row.name);
        // Placeholders only where the ending carries the value.
        let uses = |cond: Cond| {
            row.gateway_error == Some(cond)
                || matches!(row.client, ToClient::Error { condition, .. } if condition == cond)
        };
        assert_eq!(uses(Cond::OfRefusal), matches!(ending, Ending::Refused(_)), "{}", row.name);
        assert_eq!(uses(Cond::OfServerFault), matches!(ending, Ending::ServerBadXml(_)), "{}", row.name);
        let violation_code = matches!(row.websocket, Some((Code::OfViolation, _)));
        assert_eq!(violation_code, matches!(ending, Ending::WebSocketViolation { .. }), "{}", row.name);
        // A client that is gone gets no close frame, and nothing else.
        if row.websocket.is_none() {
            assert_eq!(row.client, ToClient::Nothing, "{}", row.name);
        }
    }
}

fn farewell_at(ending: &Ending, site: Site<'_>) -> Vec<Action> {
    let voice = Voice { stream_id: "gw-1", lang: "en", redirect_uri: Some("wss://gw2.example.net/") };
    let mut actions = Vec::new();
    ending::farewell(ending, site, &voice, &mut actions);
    actions
}

#[test]
fn farewells_follow_their_rows() {
    for ending in examples() {
        let row = ending.row();
        let mut sites = Vec::new();
        if row.phase != Phase::InStream {
            sites.push(Site::BeforeStream { from: DOMAIN, connection: true });
        }
        if row.phase != Phase::BeforeStream {
            sites.push(Site::InStream { batched: b"<presence/>".to_vec(), end_sent: false });
        }
        for site in sites {
            let in_stream = matches!(site, Site::InStream { .. });
            let actions = farewell_at(&ending, site);
            assert_eq!(actions.last(), Some(&Action::Done(row.outcome)), "{}", row.name);
            let sent = texts(&actions);
            match row.client {
                ToClient::Nothing => assert!(sent.is_empty(), "{}: {sent:?}", row.name),
                ToClient::Error { .. } => {
                    assert_eq!(sent.len(), if in_stream { 2 } else { 3 }, "{}: {sent:?}", row.name);
                    assert_eq!(
                        sent[0].starts_with("<open "),
                        !in_stream,
                        "ERR-2 <open/> first, before the stream only"
                    );
                    assert!(sent[sent.len() - 2].starts_with("<stream:error "), "{}: {sent:?}", row.name);
                    assert_eq!(sent[sent.len() - 1], CLOSE);
                }
                ToClient::Close | ToClient::StartTlsFailure | ToClient::SeeOtherUri => {
                    assert!(!sent.is_empty() && sent.iter().all(|text| !text.starts_with("<open ")), "{}", row.name);
                }
            }
            if let Some((Code::Is(code), _)) = row.websocket {
                assert_eq!(ws_close(&actions).map(|(sent, _)| sent), Some(code), "{}", row.name);
            }
            assert_eq!(ws_close(&actions).is_some(), row.websocket.is_some(), "{}", row.name);
            let wire = upstream(&actions);
            if in_stream {
                assert!(wire.starts_with("<presence/>"), "batched elements go first: {}: {wire}", row.name);
                let ends = matches!(row.upstream, ToUpstream::FinishWithStreamEnd | ToUpstream::ErrorThenStreamEnd);
                assert_eq!(wire.ends_with("</stream:stream>"), ends, "{}: {wire}", row.name);
            } else {
                assert!(wire.is_empty(), "nothing is written before the stream: {}", row.name);
                assert_eq!(upstream_close(&actions), Some(UpstreamClose::Discard), "{}", row.name);
            }
        }
    }
}

#[test]
fn stream_end_is_never_written_twice() {
    for ending in [Ending::Closed, Ending::ServerBadXml(XmlError::TooLarge), Ending::TooBig] {
        let actions = farewell_at(&ending, Site::InStream { batched: Vec::new(), end_sent: true });
        assert_eq!(upstream(&actions), "", "{ending:?}");
        assert_eq!(upstream_close(&actions), Some(UpstreamClose::Finish));
    }
}

const BEGIN: &str = "<!-- endings: generated from src/session/core/ending/table.rs; its tests check this copy -->\n";
const END: &str = "<!-- end of endings -->";

#[test]
fn operations_md_quotes_the_ending_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPERATIONS.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let start = doc.find(BEGIN).map(|at| at + BEGIN.len()).expect("the endings marker in docs/OPERATIONS.md");
    let end = start + doc[start..].find(END).expect("the end-of-endings marker");
    let expected = markdown_table();
    assert!(
        doc[start..end] == expected,
        "docs/OPERATIONS.md is out of date with the ending table; put this between the markers:\n{expected}"
    );
}
