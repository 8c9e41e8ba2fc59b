// Chat scenario with Strophe.js: A logs in and fetches its roster, B logs in,
// A sends B a message with a XEP-0184 receipt request, B answers with the
// receipt, A receives it, both disconnect cleanly. Prints one JSON line.

import { $iq, $msg, $pres } from "strophe.js";
import { StropheClient, Strophe } from "./lib/strophe.mjs";
import { awaitDelivery, deferred, elapsed, run, startScenario, withTimeout } from "./lib/common.mjs";

const NS_RECEIPTS = "urn:xmpp:receipts";

const { result, args } = startScenario("strophe.js", "chat");
if (args) {
  await run(result, args.timeoutMs, async () => {
    const step = Math.max(1000, args.timeoutMs / 2);
    const a = new StropheClient(args.url, args.mechanism);
    const b = new StropheClient(args.url, args.mechanism);

    const loginA = await a.login(`${args["user-a"]}@${args.domain}/a`, args["password-a"], step);
    result.a = { login_ok: true, ...loginA };

    // Roster (RFC 6121 2.1.5 set, then 2.1.3 get): A adds B, then fetches the
    // roster, which must now hold exactly that item.
    const bBare = `${args["user-b"]}@${args.domain}`;
    const iq = (stanza, what) => withTimeout(
      new Promise((resolve, reject) => {
        a.conn.sendIQ(stanza, resolve, (e) => reject(new Error(`${what} error: ${e ? Strophe.serialize(e) : "timeout"}`)), step);
      }),
      step,
      what,
    );
    const rosterStart = performance.now();
    const setResult = await iq(
      $iq({ type: "set" }).c("query", { xmlns: Strophe.NS.ROSTER }).c("item", { jid: bBare, name: "B" }),
      "roster set result",
    );
    const rosterIq = await iq($iq({ type: "get" }).c("query", { xmlns: Strophe.NS.ROSTER }), "roster result");
    const query = rosterIq.getElementsByTagName("query")[0];
    const items = query ? Array.from(query.getElementsByTagName("item")) : [];
    result.roster = {
      set_ok: setResult.getAttribute("type") === "result",
      result_received: rosterIq.getAttribute("type") === "result",
      items: items.length,
      contains_b: items.some((item) => item.getAttribute("jid") === bBare),
      ms: elapsed(rosterStart),
    };

    const loginB = await b.login(`${args["user-b"]}@${args.domain}/b`, args["password-b"], step);
    result.b = { login_ok: true, ...loginB };
    a.conn.send($pres());
    b.conn.send($pres());

    // B: wait for the message, answer the receipt request.
    const body = args.body ?? `hello from strophe.js ${Date.now()}`;
    const msgId = `e2e-${Math.random().toString(36).slice(2, 10)}`;
    const gotMessage = deferred();
    b.conn.addHandler((stanza) => {
      const bodyEl = stanza.getElementsByTagName("body")[0];
      if (!bodyEl) return true;
      const request = stanza.getElementsByTagNameNS(NS_RECEIPTS, "request").length > 0;
      gotMessage.resolve({ body: bodyEl.textContent, id: stanza.getAttribute("id"), request, from: stanza.getAttribute("from") });
      if (request) {
        b.conn.send($msg({ to: stanza.getAttribute("from"), id: `receipt-${msgId}` })
          .c("received", { xmlns: NS_RECEIPTS, id: stanza.getAttribute("id") }));
      }
      return false;
    }, null, "message", "chat");

    const gotReceipt = deferred();
    a.conn.addHandler((stanza) => {
      const received = stanza.getElementsByTagNameNS(NS_RECEIPTS, "received")[0];
      if (!received) return true;
      gotReceipt.resolve({ id: received.getAttribute("id"), from: stanza.getAttribute("from") });
      return false;
    }, null, "message");

    const sent = performance.now();
    a.conn.send($msg({ to: b.conn.jid, type: "chat", id: msgId })
      .c("body").t(body).up()
      .c("request", { xmlns: NS_RECEIPTS }));
    result.message = { id: msgId, to: b.conn.jid, body_sent: body };

    await awaitDelivery(result, { gotMessage, gotReceipt, sent, body, msgId }, [a, b], step);
  });
}
