//! How a session's last responses go out: queued stanzas in ordinary responses, the terminal
//! response alone, nothing of the client's after its own terminate reaching the core.

use super::*;

const OPEN_REPLY: &str =
    "<open xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\" from=\"example.com\" id=\"s1\" version=\"1.0\"/>";
const CLOSE: &str = "<close xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\"/>";
const MESSAGE: &str = "<message xmlns=\"jabber:client\" to=\"a@example.com\"><body>hi</body></message>";

fn params() -> Params {
    Params {
        sid: "sid".into(),
        wait: Duration::from_secs(60),
        hold: 1,
        requests: 2,
        inactivity: Duration::from_secs(60),
        polling: Duration::from_secs(2),
        max_pause: Duration::from_secs(120),
        ver: "1.6".into(),
        max_queued_bytes: 1 << 20,
    }
}

fn request(rid: u64, kind: BodyType, children: &[&str]) -> BodyRequest {
    BodyRequest {
        rid,
        sid: Some("sid".into()),
        kind,
        children: children.iter().map(|child| (*child).to_owned()).collect(),
        ..BodyRequest::default()
    }
}

/// A created session (rid 10, answered) holding request 11; the answers so far are taken.
fn created(now: Instant) -> Exchange<u64> {
    let creation = BodyRequest { rid: 10, to: Some("example.com".into()), ..BodyRequest::default() };
    let mut exchange = Exchange::new(params(), &creation, 10, now);
    assert!(matches!(exchange.next_for_core(), Some(ToCore::Text(open)) if open.starts_with("<open")));
    exchange.core_wrote(OPEN_REPLY.into()).unwrap();
    exchange.answer_ready(now);
    assert_eq!(exchange.take_answers().len(), 1, "the creation response");
    exchange.receive(now, request(11, BodyType::Normal, &[]), 11);
    assert!(exchange.take_answers().is_empty(), "request 11 is held");
    exchange
}

fn core_inputs(exchange: &mut Exchange<u64>) -> Vec<String> {
    std::iter::from_fn(|| exchange.next_for_core())
        .map(|input| match input {
            ToCore::Text(text) => text,
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_terminate_request_is_answered_only_by_the_terminal_response() {
    let now = Instant::now();
    let mut exchange = created(now);
    exchange.receive(now, request(12, BodyType::Terminate, &[]), 12);
    // The held request 11 makes room for the terminate request, empty.
    let answers = exchange.take_answers();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, 11);
    assert_eq!(core_inputs(&mut exchange), [CLOSE]);
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
    let mut exchange = created(now);
    exchange.receive(now, request(12, BodyType::Terminate, &[]), 12);
    let _ = exchange.take_answers();
    exchange.receive(now, request(13, BodyType::Normal, &["<r xmlns=\"urn:xmpp:sm:3\"/>"]), 13);
    assert_eq!(core_inputs(&mut exchange), [CLOSE], "the <r/> after terminate is not forwarded");
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
    let mut exchange = created(now);
    // The server sends a message and closes in one read: request 11 carries the message.
    exchange.core_wrote(MESSAGE.into()).unwrap();
    exchange.core_wrote(CLOSE.into()).unwrap();
    exchange.answer_ready(now);
    let answers = exchange.take_answers();
    assert_eq!(answers.len(), 1);
    assert!(answers[0].1.contains("<message") && !answers[0].1.contains("terminate"), "{}", answers[0].1);
    assert!(!exchange.terminal_delivered());
    // The client's next request gets the end.
    exchange.receive(now, request(12, BodyType::Normal, &[]), 12);
    let answers = exchange.take_answers();
    assert_eq!(answers.len(), 1);
    assert!(answers[0].1.contains("type=\"terminate\"") && !answers[0].1.contains("<message"));
    assert!(exchange.terminal_delivered());
}

#[test]
fn stanzas_queued_with_no_request_held_wait_for_the_next_one() {
    let now = Instant::now();
    let mut exchange = created(now);
    // Request 11's wait runs out: answered empty, nothing held.
    exchange.tick(now + Duration::from_secs(61));
    assert_eq!(exchange.take_answers().len(), 1);
    exchange.core_wrote(MESSAGE.into()).unwrap();
    exchange.core_wrote(CLOSE.into()).unwrap();
    exchange.answer_ready(now);
    assert!(exchange.take_answers().is_empty());
    exchange.receive(now, request(12, BodyType::Normal, &[]), 12);
    let first = exchange.take_answers();
    assert!(first[0].1.contains("<message") && !first[0].1.contains("terminate"), "{}", first[0].1);
    exchange.receive(now, request(13, BodyType::Normal, &[]), 13);
    let second = exchange.take_answers();
    assert!(second[0].1.contains("type=\"terminate\""), "{}", second[0].1);
}

#[test]
fn an_empty_request_that_arrives_after_a_later_one_is_not_polling() {
    let now = Instant::now();
    let mut exchange = created(now);
    // Request 11 (held) is answered by the server's message; the client sends an empty 12 and
    // a message in 13 on its two connections, and 13 arrives first.
    exchange.core_wrote(MESSAGE.into()).unwrap();
    exchange.answer_ready(now);
    assert_eq!(exchange.take_answers().len(), 1);
    exchange.receive(now, request(13, BodyType::Normal, &[MESSAGE]), 13);
    exchange.receive(now + Duration::from_millis(1), request(12, BodyType::Normal, &[]), 12);
    assert!(
        exchange.take_answers().iter().all(|(_, body)| !body.contains("policy-violation")),
        "a gap filled is not polling"
    );
    assert_eq!(core_inputs(&mut exchange), [MESSAGE]);
    // In a polling session (hold 0), two empty requests in a row within the polling interval
    // still are: the creation and request 11 here.
    let creation = BodyRequest { rid: 10, to: Some("example.com".into()), ..BodyRequest::default() };
    let polling = Params { hold: 0, requests: 1, ..params() };
    let mut exchange = Exchange::new(polling, &creation, 10, now);
    exchange.core_wrote(OPEN_REPLY.into()).unwrap();
    exchange.answer_ready(now);
    assert_eq!(exchange.take_answers().len(), 1, "the creation response");
    exchange.receive(now + Duration::from_millis(1), request(11, BodyType::Normal, &[]), 11);
    let answers = exchange.take_answers();
    assert!(answers.iter().any(|(_, body)| body.contains("policy-violation")), "{answers:?}");
}
