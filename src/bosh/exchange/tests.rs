//! The exchange without sockets or clocks: responders are numbers, time is an `Instant` moved by hand.
//! First the rid window, held requests, pause and queue bounds; then how a session's last
//! responses go out (queued stanzas in ordinary responses, the terminal response alone, nothing
//! of the client's after its own terminate reaching the core).

use super::*;

const OPEN_REPLY: &str =
    "<open xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\" from=\"example.com\" id=\"S1\" version=\"1.0\"/>";
const CLOSE: &str = "<close xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\"/>";
const MESSAGE: &str = "<message xmlns=\"jabber:client\" to=\"a@example.com\"><body>hi</body></message>";

fn params() -> Params {
    Params {
        sid: "s".into(),
        wait: Duration::from_secs(30),
        hold: 1,
        requests: 2,
        inactivity: Duration::from_secs(60),
        polling: Duration::from_secs(2),
        max_pause: Duration::from_secs(120),
        ver: "1.11".into(),
        max_queued_bytes: 1000,
    }
}

fn request(rid: u64, children: &[&str]) -> BodyRequest {
    BodyRequest {
        rid,
        sid: Some("s".into()),
        children: children.iter().map(|c| c.to_string()).collect(),
        ..BodyRequest::default()
    }
}

fn terminate(rid: u64) -> BodyRequest {
    BodyRequest { kind: BodyType::Terminate, ..request(rid, &[]) }
}

/// A session created at `t0` with rid 10, whose creation (responder 0) has been answered.
fn created(t0: Instant) -> Exchange<u64> {
    let creation = BodyRequest { rid: 10, to: Some("example.com".into()), ..BodyRequest::default() };
    let mut exchange = Exchange::new(params(), &creation, 0, t0);
    let open = exchange.next_for_core();
    assert!(matches!(&open, Some(ToCore::Text(text)) if text.contains("to=\"example.com\"")), "{open:?}");
    exchange.core_wrote(OPEN_REPLY.into()).unwrap();
    exchange.core_wrote("<stream:features xmlns:stream=\"http://etherx.jabber.org/streams\"/>".into()).unwrap();
    exchange.answer_ready(t0);
    let answers = exchange.take_answers();
    assert_eq!(answers.len(), 1);
    assert!(answers[0].1.contains(" authid=\"S1\"") && answers[0].1.contains("<stream:features"), "{}", answers[0].1);
    exchange
}

/// A session [`created`] at `now` that holds request 11; the answers so far are taken.
fn holding_11(now: Instant) -> Exchange<u64> {
    let mut exchange = created(now);
    exchange.receive(now, request(11, &[]), 11);
    assert!(exchange.take_answers().is_empty(), "request 11 is held");
    exchange
}

fn texts(exchange: &mut Exchange<u64>) -> Vec<String> {
    std::iter::from_fn(|| exchange.next_for_core())
        .map(|input| match input {
            ToCore::Text(text) => text,
            other => format!("{other:?}"),
        })
        .collect()
}

fn answered(exchange: &mut Exchange<u64>) -> Vec<u64> {
    exchange.take_answers().into_iter().map(|(reply, _)| reply).collect()
}

#[test]
fn a_gap_holds_later_requests_until_it_is_filled() {
    let t0 = Instant::now();
    let mut exchange = created(t0);
    exchange.receive(t0, request(12, &["<b/>"]), 2);
    assert!(texts(&mut exchange).is_empty(), "nothing before rid 11");
    exchange.receive(t0, request(11, &["<a/>"]), 1);
    assert_eq!(texts(&mut exchange), ["<a/>", "<b/>"]);
    // Two held with hold 1: the older one is answered at once.
    assert_eq!(answered(&mut exchange), [1]);
}

#[test]
fn a_held_request_moves_to_the_connection_that_repeats_it() {
    let t0 = Instant::now();
    let mut exchange = created(t0);
    exchange.receive(t0, request(11, &[]), 1);
    exchange.receive(t0, request(11, &[]), 7);
    assert_eq!(exchange.take_answers(), [(1, bosh::empty())]);
    exchange.core_wrote("<message xmlns='jabber:client'/>".into()).unwrap();
    exchange.answer_ready(t0);
    let answers = exchange.take_answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, 7);
    assert!(answers[0].1.contains("<message"));
    // And a later repeat gets that very answer again.
    exchange.receive(t0, request(11, &[]), 8);
    assert_eq!(exchange.take_answers()[0].1, answers[0].1);
}

#[test]
fn endless_repeats_are_a_policy_violation() {
    let t0 = Instant::now();
    let mut exchange = created(t0);
    for reply in 1..=8 {
        exchange.receive(t0, request(10, &[]), reply);
    }
    assert!(exchange.take_answers().iter().all(|(_, body)| !body.contains("terminate")));
    exchange.receive(t0, request(10, &[]), 9);
    assert!(exchange.take_answers()[0].1.contains("condition=\"policy-violation\""));
    assert_eq!(exchange.next_for_core(), Some(ToCore::Violation("policy-violation")));
}

#[test]
fn a_pause_answers_everything_empty_and_stretches_inactivity_up_to_maxpause() {
    let t0 = Instant::now();
    let mut exchange = created(t0);
    exchange.receive(t0, request(11, &[]), 1);
    exchange.core_wrote("<message xmlns='jabber:client'/>".into()).unwrap();
    let pause = BodyRequest { pause: Some(1000), ..request(12, &[]) };
    exchange.receive(t0, pause, 2);
    let answers = exchange.take_answers();
    // The held request takes the queued message; the pause answer carries no payload (§10).
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().any(|(reply, body)| *reply == 1 && body.contains("<message")), "{answers:?}");
    assert!(answers.iter().any(|(reply, body)| *reply == 2 && *body == bosh::empty()), "{answers:?}");
    assert_eq!(exchange.next_deadline(), Some(t0 + Duration::from_secs(120)));
    exchange.tick(t0 + Duration::from_secs(119));
    assert_eq!(exchange.next_for_core(), None);
    exchange.tick(t0 + Duration::from_secs(120));
    assert_eq!(exchange.next_for_core(), Some(ToCore::Gone));
}

#[test]
fn requests_stuck_behind_a_gap_do_not_keep_the_session_alive() {
    let t0 = Instant::now();
    let mut exchange = created(t0);
    exchange.receive(t0, request(12, &[]), 2);
    exchange.tick(t0 + Duration::from_secs(60));
    assert_eq!(exchange.next_for_core(), Some(ToCore::Gone));
    let answers = exchange.take_answers();
    assert_eq!(answers.len(), 1);
    assert!(answers[0].1.contains("item-not-found"));
}

#[test]
fn the_queue_for_a_client_that_does_not_fetch_is_bounded() {
    let t0 = Instant::now();
    let mut exchange = created(t0);
    let stanza = format!("<message xmlns='jabber:client'>{}</message>", "x".repeat(400));
    assert_eq!(exchange.core_wrote(stanza.clone()), Ok(()));
    assert_eq!(exchange.core_wrote(stanza.clone()), Ok(()));
    assert_eq!(exchange.core_wrote(stanza), Err(Overflow));
}

#[test]
fn a_relayed_stream_error_is_a_remote_stream_error_with_the_error_inside() {
    let t0 = Instant::now();
    let mut exchange = created(t0);
    exchange.receive(t0, request(11, &[]), 1);
    let error = "<stream:error xmlns:stream=\"http://etherx.jabber.org/streams\"><conflict xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/></stream:error>";
    exchange.core_wrote(error.into()).unwrap();
    exchange.core_wrote(CLOSE.into()).unwrap();
    exchange.answer_ready(t0);
    let answers = exchange.take_answers();
    assert_eq!(answers.len(), 1);
    assert!(
        answers[0].1.contains("condition=\"remote-stream-error\"") && answers[0].1.contains("<conflict"),
        "{}",
        answers[0].1
    );
    assert!(exchange.terminal_delivered());
}

#[test]
fn a_websocket_redirect_is_a_system_shutdown_for_bosh() {
    let t0 = Instant::now();
    let mut exchange = created(t0);
    exchange
        .core_wrote(
            "<close xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\" see-other-uri=\"wss://b.example/x\" />".into(),
        )
        .unwrap();
    // No request held: the end waits for the next one.
    exchange.answer_ready(t0);
    assert!(exchange.take_answers().is_empty());
    assert!(!exchange.terminal_delivered());
    assert_eq!(exchange.terminal_body().unwrap(), bosh::terminate(Some("system-shutdown"), &[]));
}

#[test]
fn the_stanzas_of_a_terminate_request_reach_the_core_before_the_close() {
    let t0 = Instant::now();
    let mut exchange = created(t0);
    let presence = "<presence xmlns='jabber:client' type='unavailable'/>";
    let terminate = BodyRequest { kind: BodyType::Terminate, ..request(11, &[presence]) };
    exchange.receive(t0, terminate, 1);
    assert_eq!(texts(&mut exchange), [presence, CLOSE]);
    // What the server sends meanwhile, and its close, are covered by
    // `a_terminate_request_is_answered_only_by_the_terminal_response` below.
    exchange.core_wrote(CLOSE.into()).unwrap();
    exchange.answer_ready(t0);
    let answers = exchange.take_answers();
    assert_eq!(answers.len(), 1);
    assert!(answers[0].1.contains("type=\"terminate\""), "{}", answers[0].1);
}

#[test]
fn an_old_rid_whose_answer_is_gone_is_item_not_found() {
    let t0 = Instant::now();
    let mut exchange = created(t0);
    for (rid, reply) in [(11, 1), (12, 2), (13, 3)] {
        exchange.receive(t0, request(rid, &["<a xmlns='x'/>"]), reply);
    }
    exchange.take_answers();
    // 11 was answered when 12 came, 12 when 13 came: the buffer keeps those two (requests = 2),
    // and the creation's answer (rid 10) is gone.
    exchange.receive(t0, request(11, &[]), 4);
    assert!(!exchange.take_answers()[0].1.contains("terminate"));
    exchange.receive(t0, request(10, &[]), 5);
    let answers = exchange.take_answers();
    assert!(answers.iter().all(|(_, body)| body.contains("condition=\"item-not-found\"")), "{answers:?}");
    let inputs: Vec<ToCore> = std::iter::from_fn(|| exchange.next_for_core()).collect();
    assert_eq!(inputs.len(), 4, "{inputs:?}");
    assert_eq!(inputs.last(), Some(&ToCore::Violation("item-not-found")), "after the children of 11–13");
}

#[test]
fn a_terminate_request_is_answered_only_by_the_terminal_response() {
    let now = Instant::now();
    let mut exchange = holding_11(now);
    exchange.receive(now, terminate(12), 12);
    // The held request 11 makes room for the terminate request, empty.
    let answers = exchange.take_answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, 11);
    assert_eq!(texts(&mut exchange), [CLOSE]);
    // Stanzas the server sends while the stream closes do not answer the terminate request.
    exchange.core_wrote(MESSAGE.into()).unwrap();
    exchange.answer_ready(now);
    assert!(exchange.take_answers().is_empty(), "the terminate request waits for the end");
    exchange.core_wrote(CLOSE.into()).unwrap();
    exchange.answer_ready(now);
    let answers = exchange.take_answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, 12);
    assert!(answers[0].1.contains("type=\"terminate\""), "{}", answers[0].1);
    assert!(!answers[0].1.contains("<message"), "no stanza in the terminal response: {}", answers[0].1);
    assert!(exchange.terminal_delivered());
}

#[test]
fn nothing_sent_after_the_clients_terminate_reaches_the_core() {
    let now = Instant::now();
    let mut exchange = holding_11(now);
    exchange.receive(now, terminate(12), 12);
    let _ = exchange.take_answers();
    exchange.receive(now, request(13, &["<r xmlns=\"urn:xmpp:sm:3\"/>"]), 13);
    assert_eq!(texts(&mut exchange), [CLOSE], "the <r/> after terminate is not forwarded");
    assert!(exchange.take_answers().is_empty());
    exchange.core_wrote(CLOSE.into()).unwrap();
    exchange.answer_ready(now);
    let answers = exchange.take_answers();
    let rids: Vec<u64> = answers.iter().map(|(rid, _)| *rid).collect();
    assert_eq!(rids, [12, 13]);
    assert!(answers.iter().all(|(_, body)| body.contains("type=\"terminate\"") && !body.contains("<a ")));
}

#[test]
fn stanzas_queued_when_the_server_ends_go_out_before_the_terminal_response() {
    let now = Instant::now();
    let mut exchange = holding_11(now);
    // The server sends a message and closes in one read: request 11 carries the message.
    exchange.core_wrote(MESSAGE.into()).unwrap();
    exchange.core_wrote(CLOSE.into()).unwrap();
    exchange.answer_ready(now);
    let answers = exchange.take_answers();
    assert_eq!(answers.len(), 1);
    assert!(answers[0].1.contains("<message") && !answers[0].1.contains("terminate"), "{}", answers[0].1);
    assert!(!exchange.terminal_delivered());
    // The client's next request gets the end.
    exchange.receive(now, request(12, &[]), 12);
    let answers = exchange.take_answers();
    assert_eq!(answers.len(), 1);
    assert!(answers[0].1.contains("type=\"terminate\"") && !answers[0].1.contains("<message"));
    assert!(exchange.terminal_delivered());
}

#[test]
fn stanzas_queued_with_no_request_held_wait_for_the_next_one() {
    let now = Instant::now();
    let mut exchange = holding_11(now);
    // Request 11's wait runs out: answered empty, nothing held.
    exchange.tick(now + params().wait + Duration::from_secs(1));
    assert_eq!(exchange.take_answers().len(), 1);
    exchange.core_wrote(MESSAGE.into()).unwrap();
    exchange.core_wrote(CLOSE.into()).unwrap();
    exchange.answer_ready(now);
    assert!(exchange.take_answers().is_empty());
    exchange.receive(now, request(12, &[]), 12);
    let first = exchange.take_answers();
    assert!(first[0].1.contains("<message") && !first[0].1.contains("terminate"), "{}", first[0].1);
    exchange.receive(now, request(13, &[]), 13);
    let second = exchange.take_answers();
    assert!(second[0].1.contains("type=\"terminate\""), "{}", second[0].1);
}

#[test]
fn an_empty_request_that_arrives_after_a_later_one_is_not_polling() {
    let now = Instant::now();
    let mut exchange = holding_11(now);
    // Request 11 (held) is answered by the server's message; the client sends an empty 12 and
    // a message in 13 on its two connections, and 13 arrives first.
    exchange.core_wrote(MESSAGE.into()).unwrap();
    exchange.answer_ready(now);
    assert_eq!(exchange.take_answers().len(), 1);
    exchange.receive(now, request(13, &[MESSAGE]), 13);
    exchange.receive(now + Duration::from_millis(1), request(12, &[]), 12);
    assert!(
        exchange.take_answers().iter().all(|(_, body)| !body.contains("policy-violation")),
        "a gap filled is not polling"
    );
    assert_eq!(texts(&mut exchange), [MESSAGE]);
    // In a polling session (hold 0), two empty requests in a row within the polling interval
    // still are: the creation and request 11 here.
    let creation = BodyRequest { rid: 10, to: Some("example.com".into()), ..BodyRequest::default() };
    let polling = Params { hold: 0, requests: 1, ..params() };
    let mut exchange = Exchange::new(polling, &creation, 10, now);
    exchange.core_wrote(OPEN_REPLY.into()).unwrap();
    exchange.answer_ready(now);
    assert_eq!(exchange.take_answers().len(), 1, "the creation response");
    exchange.receive(now + Duration::from_millis(1), request(11, &[]), 11);
    let answers = exchange.take_answers();
    assert!(answers.iter().any(|(_, body)| body.contains("policy-violation")), "{answers:?}");
}
