//! One BOSH session's request/response bookkeeping, with no I/O and no clock of its own: the
//! `rid` window, in-order processing of requests that arrive out of order, held requests and
//! their `wait`, the queue of what goes to the client, retransmission of recent responses,
//! overactivity and polling limits, `pause` and inactivity (XEP-0124 §8–§14).
//!
//! Requests come in with [`Exchange::receive`]; what they carry for the session core comes out
//! of [`Exchange::next_for_core`]; the core's messages go in with [`Exchange::core_wrote`]; answers
//! to send come out of [`Exchange::take_answers`], each with the responder of its request (an
//! HTTP handler's channel in the shell, anything in tests). It decides nothing about XMPP.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::xml::bosh::{self, BodyRequest, BodyType, CoreOutput, Created};
use crate::xml::framing::{escape_attr, push_attr};

#[cfg(test)]
mod tests;

/// The parameters granted at session creation.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub sid: String,
    pub wait: Duration,
    pub hold: usize,
    /// `requests`: hold + 1.
    pub requests: usize,
    pub inactivity: Duration,
    pub polling: Duration,
    pub max_pause: Duration,
    pub ver: String,
    /// Most bytes queued for the client (what a WebSocket may hold unsent).
    pub max_queued_bytes: usize,
}

/// What the core is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToCore {
    /// One element (or a synthesized `<open/>`/`<close/>`), as one WebSocket message.
    Text(String),
    /// The client is gone (inactivity).
    Gone,
    /// The client broke the BOSH rules; it has been answered with this terminal condition.
    Violation(&'static str),
}

/// The client's queue is over its bound: it does not fetch what it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow;

struct Held<R> {
    rid: u64,
    reply: R,
    /// When it is answered empty; `None` for the creation and terminate requests, answered
    /// only by the stream's opening or end.
    deadline: Option<Instant>,
    /// The client's `type='terminate'` request, or one after it: answered only by the
    /// terminal response, never with stanzas (clients stop reading a session they ended, and
    /// StanzaJS fails on a terminal response with stanzas in it).
    ends: bool,
}

/// The session's request/response state (see the module documentation).
pub(crate) struct Exchange<R> {
    params: Params,
    /// The highest rid processed in order.
    last_rid: u64,
    /// When the last new request arrived (polling).
    last_arrival: Instant,
    /// Requests ahead of a gap, by rid.
    pending: BTreeMap<u64, (BodyRequest, R)>,
    held: VecDeque<Held<R>>,
    outbox: Vec<String>,
    outbox_bytes: usize,
    /// The last responses, for retransmission.
    answered: VecDeque<(u64, String)>,
    /// Repeated requests since the last new one.
    repeats: usize,
    /// Since when no request is held.
    idle_since: Instant,
    /// The inactivity period now (a pause changes it until the next request).
    inactivity: Duration,
    /// The reply `<open/>` (from, authid, version) once the core sent it; `None` after the
    /// creation response went out.
    opened: Option<(String, String, Option<String>)>,
    created: bool,
    /// The terminal condition and children, once the stream ended.
    terminal: Option<(Option<&'static str>, Vec<String>)>,
    /// A stream error seen before `<close/>`.
    stream_error: Option<(Option<&'static str>, String)>,
    /// Whether the terminal response reached a request.
    terminal_sent: bool,
    /// The client sent `type='terminate'`: nothing it sends later reaches the core, and
    /// stanzas that no earlier request can carry are dropped.
    client_ended: bool,
    /// The domain of the session creation, for restarts that do not repeat it.
    to: Option<String>,
    to_core: VecDeque<ToCore>,
    answers: Vec<(R, String)>,
}

impl<R> Exchange<R> {
    /// A session created by `creation` (already checked: no sid, a `to`) at `now`, answered
    /// once the core opens the stream.
    pub(crate) fn new(params: Params, creation: &BodyRequest, reply: R, now: Instant) -> Self {
        let open = client_open(creation.to.as_deref(), creation.lang.as_deref(), creation.from.as_deref());
        let inactivity = params.inactivity;
        let mut exchange = Exchange {
            params,
            last_rid: creation.rid,
            last_arrival: now,
            pending: BTreeMap::new(),
            held: VecDeque::new(),
            outbox: Vec::new(),
            outbox_bytes: 0,
            answered: VecDeque::new(),
            repeats: 0,
            idle_since: now,
            inactivity,
            opened: None,
            created: false,
            terminal: None,
            stream_error: None,
            terminal_sent: false,
            client_ended: false,
            to: creation.to.clone(),
            to_core: VecDeque::new(),
            answers: Vec::new(),
        };
        exchange.held.push_back(Held { rid: creation.rid, reply, deadline: None, ends: false });
        exchange.to_core.push_back(ToCore::Text(open));
        exchange
    }

    /// The next input for the core.
    pub(crate) fn next_for_core(&mut self) -> Option<ToCore> {
        self.to_core.pop_front()
    }

    /// Answers to send, each with its request's responder.
    pub(crate) fn take_answers(&mut self) -> Vec<(R, String)> {
        std::mem::take(&mut self.answers)
    }

    /// Whether the stream has ended and its terminal response reached a request.
    pub(crate) fn terminal_delivered(&self) -> bool {
        self.terminal_sent
    }

    /// The terminal response, once the stream has ended.
    pub(crate) fn terminal_body(&self) -> Option<String> {
        self.terminal.as_ref().map(|(condition, _)| bosh::terminate(*condition, &[]))
    }

    /// A request of this session arrived at `now`.
    pub(crate) fn receive(&mut self, now: Instant, body: BodyRequest, reply: R) {
        if self.terminal.is_some() {
            // Stanzas queued when the stream ended go first, in an ordinary response.
            if !self.outbox.is_empty() && !self.client_ended {
                let answer = bosh::with_children(&self.outbox);
                self.take_outbox();
                return self.answers.push((reply, answer));
            }
            let answer = self.terminal_body().unwrap_or_default();
            self.terminal_sent = true;
            return self.answers.push((reply, answer));
        }
        let rid = body.rid;
        if rid <= self.last_rid {
            return self.repeat(now, rid, reply);
        }
        if rid > self.last_rid + self.params.requests as u64 {
            return self.fail("item-not-found", Some(reply));
        }
        if let Some(waiting) = self.pending.get_mut(&rid) {
            // The same request again before it was processed: the latest connection gets it.
            let (_, old) = std::mem::replace(waiting, (body, reply));
            self.answers.push((old, bosh::empty()));
            return;
        }
        self.repeats = 0;
        let outstanding = self.held.len() + self.pending.len() + 1;
        let exempt = body.pause.is_some() || body.kind == BodyType::Terminate;
        let allowed = self.params.requests + usize::from(exempt);
        if outstanding > allowed {
            return self.fail("policy-violation", Some(reply));
        }
        // Only polling sessions (hold 0) are held to `polling`: with hold ≥ 1 an empty request
        // next to one carrying data is how clients keep a request held (docs/PROTOCOL.md BOSH-9).
        // And "the last request" of §12 is the last in rid order: an empty request that arrives
        // after a later one (a client's two connections race) fills a gap, it is not polling.
        let last_in_order = self.pending.keys().next_back().is_none_or(|&later| rid > later);
        let polling = self.params.hold == 0
            && outstanding == self.params.requests
            && last_in_order
            && !exempt
            && !body.restart
            && body.children.is_empty()
            && now.saturating_duration_since(self.last_arrival) < self.params.polling;
        if polling {
            return self.fail("policy-violation", Some(reply));
        }
        self.last_arrival = now;
        self.pending.insert(rid, (body, reply));
        while let Some((body, reply)) = self.pending.remove(&(self.last_rid + 1)) {
            self.last_rid += 1;
            self.process(now, body, reply);
        }
        self.answer_ready(now);
    }

    /// A request with a rid already seen.
    fn repeat(&mut self, now: Instant, rid: u64, reply: R) {
        self.repeats += 1;
        if self.repeats > 4 * self.params.requests {
            return self.fail("policy-violation", Some(reply));
        }
        if let Some(held) = self.held.iter_mut().find(|held| held.rid == rid) {
            // Its answer goes to the latest connection; the older one gets an empty body.
            let old = std::mem::replace(&mut held.reply, reply);
            self.answers.push((old, bosh::empty()));
            return;
        }
        match self.answered.iter().find(|(answered, _)| *answered == rid) {
            Some((_, body)) => {
                let body = body.clone();
                self.idle_since = now;
                self.answers.push((reply, body));
            }
            None => self.fail("item-not-found", Some(reply)),
        }
    }

    /// Processes the next request in rid order.
    fn process(&mut self, now: Instant, body: BodyRequest, reply: R) {
        self.inactivity = self.params.inactivity;
        if self.client_ended {
            // After the client's own terminate: its payloads go nowhere (the stream is being
            // closed), and it gets the terminal response with the terminate request.
            return self.held.push_back(Held { rid: body.rid, reply, deadline: None, ends: true });
        }
        if body.restart {
            let open = client_open(body.to.as_deref().or(self.to.as_deref()), None, body.from.as_deref());
            self.to_core.push_back(ToCore::Text(open));
        }
        for child in body.children {
            self.to_core.push_back(ToCore::Text(child));
        }
        if body.kind == BodyType::Terminate {
            self.to_core.push_back(ToCore::Text("<close xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\"/>".into()));
            self.held.push_back(Held { rid: body.rid, reply, deadline: None, ends: true });
            self.client_ended = true;
            return;
        }
        if let Some(pause) = body.pause {
            // Every held request is answered at once (the oldest with what is queued), and this
            // one without payloads and not kept for retransmission (§10, §14.3).
            for held in std::mem::take(&mut self.held) {
                let body = bosh::with_children(&self.outbox);
                self.take_outbox();
                self.respond(now, held, body);
            }
            self.answers.push((reply, bosh::empty()));
            self.idle_since = now;
            self.inactivity = Duration::from_secs(pause).min(self.params.max_pause);
            return;
        }
        let deadline = Some(now + self.params.wait);
        self.held.push_back(Held { rid: body.rid, reply, deadline, ends: false });
    }

    /// Ends the session for a broken rule: every request is answered with `condition`, and
    /// the core is told.
    fn fail(&mut self, condition: &'static str, reply: Option<R>) {
        self.terminal = Some((Some(condition), Vec::new()));
        self.outbox.clear();
        let body = bosh::terminate(Some(condition), &[]);
        for held in std::mem::take(&mut self.held) {
            self.answers.push((held.reply, body.clone()));
        }
        for (_, (_, reply)) in std::mem::take(&mut self.pending) {
            self.answers.push((reply, body.clone()));
        }
        if let Some(reply) = reply {
            self.answers.push((reply, body));
        }
        self.terminal_sent = true;
        self.to_core.push_back(ToCore::Violation(condition));
    }

    /// One message of the core to the client.
    pub(crate) fn core_wrote(&mut self, text: String) -> Result<(), Overflow> {
        match bosh::core_output(&text) {
            CoreOutput::Open { from, id, version } => {
                if !self.created && self.opened.is_none() {
                    self.opened = Some((from.unwrap_or_default(), id.unwrap_or_default(), version));
                }
            }
            CoreOutput::StreamError(condition) => {
                let mapped = bosh::terminal_condition(condition);
                self.stream_error = Some((mapped, text));
            }
            CoreOutput::Close { see_other_uri } => self.end_stream(see_other_uri),
            CoreOutput::Element => {
                if self.terminal.is_some() {
                    return Ok(());
                }
                self.outbox_bytes += text.len();
                if self.outbox_bytes > self.params.max_queued_bytes {
                    return Err(Overflow);
                }
                self.outbox.push(text);
            }
        }
        Ok(())
    }

    /// The stream ended (`<close/>`, or the core closed the client without one). Stanzas still
    /// queued stay in the outbox: they go out in an ordinary response before the terminal one.
    pub(crate) fn end_stream(&mut self, see_other_uri: Option<String>) {
        if self.terminal.is_some() {
            return;
        }
        let mut children = Vec::new();
        let condition = match (see_other_uri, self.stream_error.take()) {
            // A WebSocket URI is no use to a BOSH client: it is told the gateway is shutting down.
            (Some(uri), _) if uri.starts_with("http") => {
                let mut child = String::from("<uri>");
                escape_attr(&mut child, &uri, '"');
                child.push_str("</uri>");
                children.push(child);
                Some("see-other-uri")
            }
            (Some(_), _) => Some("system-shutdown"),
            (None, Some((Some(condition), _))) => Some(condition),
            (None, Some((None, error))) => {
                children.push(error);
                Some("remote-stream-error")
            }
            (None, None) => None,
        };
        self.terminal = Some((condition, children));
    }

    /// Answers what can be answered now: the creation response once the stream is open, the
    /// terminal response once it has ended, queued elements to the oldest held request, and
    /// the oldest held requests beyond `hold`.
    pub(crate) fn answer_ready(&mut self, now: Instant) {
        if let Some((condition, children)) = self.terminal.take() {
            if !self.outbox.is_empty() {
                // What was queued goes in an ordinary response, to a request that may carry
                // stanzas; with none held, to the client's next request. After the client's own
                // terminate, none will come: the stanzas are dropped.
                if self.held.front().is_some_and(|held| !held.ends) {
                    let first = self.held.pop_front().expect("not empty");
                    let body = bosh::with_children(&self.outbox);
                    self.take_outbox();
                    self.respond(now, first, body);
                } else if self.client_ended {
                    self.take_outbox();
                }
            }
            if !self.outbox.is_empty() {
                self.terminal = Some((condition, children));
                return;
            }
            if let Some(first) = self.held.pop_front() {
                self.respond(now, first, bosh::terminate(condition, &children));
                let body = bosh::terminate(condition, &[]);
                for held in std::mem::take(&mut self.held) {
                    self.respond(now, held, body.clone());
                }
                self.terminal_sent = true;
            }
            self.terminal = Some((condition, if self.terminal_sent { Vec::new() } else { children }));
            return;
        }
        if !self.created {
            let Some((from, authid, version)) = self.opened.take() else { return };
            let Some(first) = self.held.pop_front() else { return };
            let params = &self.params;
            let created = Created {
                sid: &params.sid,
                wait: params.wait.as_secs(),
                requests: params.requests as u64,
                hold: params.hold as u64,
                inactivity: params.inactivity.as_secs(),
                polling: params.polling.as_secs(),
                maxpause: params.max_pause.as_secs(),
                ver: &params.ver,
                from: &from,
                authid: &authid,
                xmpp_version: version.as_deref(),
            };
            let body = created.body(&self.outbox);
            self.take_outbox();
            self.created = true;
            self.respond(now, first, body);
            return;
        }
        while self.held.front().is_some_and(|held| !held.ends)
            && (!self.outbox.is_empty() || self.held.len() > self.params.hold)
        {
            let first = self.held.pop_front().expect("not empty");
            let body = bosh::with_children(&self.outbox);
            self.take_outbox();
            self.respond(now, first, body);
        }
    }

    fn take_outbox(&mut self) {
        self.outbox.clear();
        self.outbox_bytes = 0;
    }

    fn respond(&mut self, now: Instant, held: Held<R>, body: String) {
        if self.answered.len() == self.params.requests {
            self.answered.pop_front();
        }
        self.answered.push_back((held.rid, body.clone()));
        self.answers.push((held.reply, body));
        if self.held.is_empty() {
            self.idle_since = now;
        }
    }

    /// When [`Self::tick`] has something to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.terminal.is_some() {
            return None;
        }
        match self.held.front() {
            Some(held) => held.deadline,
            None => Some(self.idle_since + self.inactivity),
        }
    }

    /// Time passed: held requests whose wait ran out are answered (empty, or with what is
    /// queued); with none held for the inactivity period, the client is gone.
    pub(crate) fn tick(&mut self, now: Instant) {
        if self.terminal.is_some() || !self.created {
            return;
        }
        while self.held.front().is_some_and(|held| held.deadline.is_some_and(|at| at <= now)) {
            let first = self.held.pop_front().expect("not empty");
            let body = bosh::with_children(&self.outbox);
            self.take_outbox();
            self.respond(now, first, body);
        }
        if self.held.is_empty() && now >= self.idle_since + self.inactivity {
            // Later requests are answered as if the session did not exist (§10).
            self.terminal = Some((Some("item-not-found"), Vec::new()));
            self.terminal_sent = true;
            for (_, (_, reply)) in std::mem::take(&mut self.pending) {
                self.answers.push((reply, bosh::terminate(Some("item-not-found"), &[])));
            }
            self.to_core.push_back(ToCore::Gone);
        }
    }
}

/// The `<open/>` the core gets for a session creation or a restart, as a WebSocket client would
/// send it.
fn client_open(to: Option<&str>, lang: Option<&str>, from: Option<&str>) -> String {
    let mut open = String::from("<open xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\"");
    push_attr(&mut open, "to", to, '"');
    push_attr(&mut open, "xml:lang", lang, '"');
    push_attr(&mut open, "from", from, '"');
    open.push_str(" version=\"1.0\"/>");
    open
}
