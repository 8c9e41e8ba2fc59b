//! Twins of the wire tests about the end of the open stream: clean closes in either order,
//! abrupt losses on either side, server and client stream errors, pings and timeouts
//! (tests/relay.rs, tests/conformance.rs, tests/operations.rs).

use std::time::Duration;

use super::*;
use crate::xml::condition::StreamCondition;

#[test]
fn tv_86_open_after_close_is_not_processed() {
    let mut driver = Driver::opened();
    assert_eq!(upstream(&driver.client(CLOSE)), "</stream:stream>");
    let actions = driver.client(OPEN);
    assert!(texts(&actions).iter().all(|text| !text.starts_with("<open ")), "{actions:?}");
    assert!(upstream(&actions).is_empty(), "no second </stream:stream>, no new header");
    assert_eq!(ws_close(&actions).map(|(code, _)| code), Some(1000));
}

#[test]
fn tv_90_client_close_is_a_clean_close_both_ways() {
    let mut driver = Driver::opened();
    assert_eq!(upstream(&driver.client(CLOSE)), "</stream:stream>");
    assert_eq!(driver.core.state_name(), "closing-by-client");
    let actions = driver.server("<presence type='unavailable' from='juliet@example.com/balcony' to='juliet@example.com/balcony'/></stream:stream>");
    let sent = texts(&actions);
    assert!(sent[0].starts_with("<presence ") && sent[0].contains("unavailable"), "{sent:?}");
    assert_eq!(sent[1], CLOSE);
    assert_eq!(ws_close(&actions), Some((1000, ending::STREAM_CLOSED)));
    assert!(upstream(&actions).is_empty(), "</stream:stream> went up once");
    assert_eq!(upstream_close(&actions), Some(UpstreamClose::Finish));
    assert_eq!(done(&actions), Some(Outcome::Clean));
}

#[test]
fn tv_91_server_close_reaches_the_client_as_close_and_the_client_close_goes_back() {
    let mut driver = Driver::opened();
    assert_eq!(texts(&driver.server("</stream:stream>")), vec![CLOSE.to_string()]);
    driver.client(r#"<presence xmlns="jabber:client" type="unavailable"/>"#);
    let actions = driver.client(CLOSE);
    assert_eq!(upstream(&actions), r#"<presence xmlns="jabber:client" type="unavailable"/></stream:stream>"#);
    assert_eq!(ws_close(&actions), Some((1000, ending::STREAM_CLOSED)));
    assert_eq!(done(&actions), Some(Outcome::Clean));
}

#[test]
fn tv_92_server_half_close_still_receives_the_client_close() {
    let mut driver = Driver::opened();
    driver.server("</stream:stream>");
    assert!(driver.feed(Input::UpstreamGone(UpstreamGone::ReadEnd)).is_empty());
    assert!(!driver.core.reads_upstream());
    let actions = driver.client(CLOSE);
    assert_eq!(upstream(&actions), "</stream:stream>");
    assert_eq!(done(&actions), Some(Outcome::Clean));
}

#[test]
fn tv_93_close_immediately_followed_by_websocket_close_still_ends_the_stream() {
    let mut driver = Driver::opened();
    assert_eq!(upstream(&driver.client(CLOSE)), "</stream:stream>");
    let actions = driver.feed(Input::ClientGone);
    assert_eq!(done(&actions), Some(Outcome::ClientVanished));
    assert!(upstream(&actions).is_empty(), "</stream:stream> is not repeated");
}

#[test]
fn tv_94_client_vanishing_ends_the_upstream_without_stream_end() {
    let mut driver = Driver::opened();
    driver.client(MESSAGE);
    let actions = driver.feed(Input::ClientGone);
    assert_eq!(upstream(&actions), MESSAGE, "the batched stanza still goes, never </stream:stream>");
    assert_eq!(upstream_close(&actions), Some(UpstreamClose::Abort));
    assert_eq!(ws_close(&actions), None);
    assert_eq!(done(&actions), Some(Outcome::ClientVanished));
}

#[test]
fn tv_95_server_vanishing_closes_the_websocket_with_1014_and_no_close() {
    let mut driver = Driver::opened();
    let actions = driver.feed(Input::UpstreamGone(UpstreamGone::ReadEnd));
    assert!(texts(&actions).is_empty(), "{actions:?}");
    assert_eq!(ws_close(&actions), Some((1014, "upstream connection lost")));
    assert_eq!(done(&actions), Some(Outcome::ServerVanished));
}

#[test]
fn err_1_server_stream_error_is_relayed_then_close() {
    let mut driver = Driver::opened();
    let actions = driver.server("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>Replaced by new connection</text></stream:error></stream:stream>");
    let sent = texts(&actions);
    assert!(
        sent[0].starts_with("<stream:error ") && sent[0].contains(r#"xmlns:stream="http://etherx.jabber.org/streams""#)
    );
    assert!(sent[0].contains("<conflict") && sent[0].contains("Replaced by new connection"), "{sent:?}");
    assert_eq!(sent[1], CLOSE);
    assert!(counts(&actions).contains(&Count::StreamError { condition: StreamCondition::Conflict, side: Side::Server }));
    // Strophe closes the WebSocket on <close/> without answering: the close is complete.
    let end = driver.feed(Input::ClientGone);
    assert_eq!(done(&end), Some(Outcome::ServerStreamError));
    assert_eq!(driver.core.ending(), Some(&Ending::ClosedAfterServerError { condition: StreamCondition::Conflict }));
    assert_eq!(upstream(&end), "</stream:stream>");
}

#[test]
fn tv_97_see_other_host_after_features_is_remote_connection_failed_never_relayed() {
    let mut driver = Driver::opened();
    let actions = driver.server("<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>xmpp2.example.com:5222</see-other-host></stream:error></stream:stream>");
    let sent = texts(&actions);
    assert!(sent[0].contains("<remote-connection-failed") && !sent[0].contains("xmpp2"), "{sent:?}");
    assert_eq!(sent[1], CLOSE);
    assert!(!actions.iter().any(|action| matches!(action, Action::Connect(_))));
}

#[test]
fn tv_99_client_stream_error_is_relayed_and_ends_the_upstream_stream() {
    let mut driver = Driver::opened();
    let error = r#"<stream:error xmlns:stream="http://etherx.jabber.org/streams"><undefined-condition xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>"#;
    let mut wire = upstream(&driver.client(error));
    wire += &upstream(&driver.client(CLOSE));
    assert_eq!(wire, format!("{error}</stream:stream>"));
    let end = driver.server("</stream:stream>");
    assert_eq!(texts(&end), vec![CLOSE.to_string()]);
    assert_eq!(done(&end), Some(Outcome::Clean));
}

#[test]
fn element_after_the_clients_close_is_not_well_formed() {
    let mut driver = Driver::opened();
    driver.client(CLOSE);
    let actions = driver.client(MESSAGE);
    assert_eq!(texts(&actions), vec![stream_error("not-well-formed"), CLOSE.to_string()]);
    assert!(upstream(&actions).is_empty());
}

#[test]
fn pong_deadline_closes_a_client_that_stopped_answering() {
    let mut driver = Driver::opened();
    let ping = driver.later(Duration::from_secs(30)).fire(Timer::Ping);
    assert_eq!(ping, vec![Action::Ping, Action::SetTimer(Timer::Pong, driver.now + Duration::from_secs(15))]);
    let actions = driver.later(Duration::from_secs(15)).fire(Timer::Pong);
    assert_eq!(ws_close(&actions), Some((1008, "no pong within the deadline")));
    assert_eq!(upstream_close(&actions), Some(UpstreamClose::Abort));
    assert_eq!(done(&actions), Some(Outcome::PongTimeout));
}

#[test]
fn a_pong_re_arms_the_ping_an_interval_after_the_last_one() {
    let mut driver = Driver::opened();
    driver.later(Duration::from_secs(30)).fire(Timer::Ping);
    let sent_at = driver.now;
    let actions = driver.later(Duration::from_secs(1)).feed(Input::ClientPong);
    assert_eq!(
        actions,
        vec![Action::ClearTimer(Timer::Pong), Action::SetTimer(Timer::Ping, sent_at + Duration::from_secs(30))]
    );
    assert!(driver.fire(Timer::Pong).is_empty(), "a stale timer is ignored");
}

#[test]
fn idle_timeout_ends_a_silent_session_with_connection_timeout() {
    let mut driver = Driver::opened();
    driver.later(Duration::from_secs(1800)).client(MESSAGE);
    let early = driver.later(Duration::from_secs(1800)).fire(Timer::Idle);
    assert_eq!(early, vec![Action::SetTimer(Timer::Idle, driver.now + Duration::from_secs(1800))]);
    let actions = driver.later(Duration::from_secs(1800)).fire(Timer::Idle);
    assert_eq!(texts(&actions), vec![stream_error("connection-timeout"), CLOSE.to_string()]);
    assert_eq!(upstream(&actions), format!("{MESSAGE}</stream:stream>"));
    assert_eq!(done(&actions), Some(Outcome::IdleTimeout));
}

#[test]
fn close_timeout_ends_a_close_the_server_never_answers() {
    let mut driver = Driver::opened();
    let close = driver.client(CLOSE);
    assert!(close.contains(&Action::ClearTimer(Timer::Idle)), "{close:?}");
    assert!(close.contains(&Action::SetTimer(Timer::Close, driver.now + Duration::from_secs(5))), "{close:?}");
    let actions = driver.later(Duration::from_secs(5)).fire(Timer::Close);
    assert_eq!(ws_close(&actions), Some((1000, "close timed out")));
    assert!(upstream(&actions).is_empty(), "</stream:stream> went up once");
    assert_eq!(done(&actions), Some(Outcome::CloseTimeout));
}

#[test]
fn a_client_that_stops_reading_loses_its_session_instead_of_holding_it() {
    let mut driver = Driver::opened();
    let actions = driver.feed(Input::ClientStalled);
    assert_eq!(ws_close(&actions), None, "nothing more is sent to a client that does not read");
    assert_eq!(upstream_close(&actions), Some(UpstreamClose::Abort));
    assert_eq!(done(&actions), Some(Outcome::ClientStalled));
    assert!(driver.feed(Input::ClientGone).is_empty(), "nothing after the end");
}

#[test]
fn cl_2_client_leaving_after_the_server_end_is_a_clean_close() {
    let mut driver = Driver::opened();
    driver.server("</stream:stream>");
    let actions = driver.feed(Input::ClientGone);
    assert_eq!(upstream(&actions), "</stream:stream>");
    assert_eq!(upstream_close(&actions), Some(UpstreamClose::Finish));
    assert_eq!(done(&actions), Some(Outcome::Clean));
}
