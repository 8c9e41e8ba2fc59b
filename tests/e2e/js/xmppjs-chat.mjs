// Chat scenario with xmpp.js (@xmpp/client): A logs in and fetches its roster,
// B logs in, A sends B a message with a XEP-0184 receipt request, B answers with
// the receipt, A receives it, both disconnect cleanly. Prints one JSON line.

import { XmppJsClient, xml } from "./lib/xmppjs.mjs";
import { awaitDelivery, deferred, elapsed, run, startScenario, withTimeout } from "./lib/common.mjs";

const NS_RECEIPTS = "urn:xmpp:receipts";
const NS_ROSTER = "jabber:iq:roster";

const { result, args } = startScenario("@xmpp/client", "chat");
if (args) {
  await run(result, args.timeoutMs, async () => {
    const step = Math.max(1000, args.timeoutMs / 2);
    const common = { url: args.url, domain: args.domain, mechanism: args.mechanism };
    const a = new XmppJsClient({ ...common, username: args["user-a"], password: args["password-a"], resource: "a" });
    const b = new XmppJsClient({ ...common, username: args["user-b"], password: args["password-b"], resource: "b" });

    const loginA = await a.login(step);
    result.a = { login_ok: true, ...loginA };

    // Roster (RFC 6121 2.1.5 set, then 2.1.3 get): A adds B, then fetches the
    // roster, which must now hold exactly that item.
    const bBare = `${args["user-b"]}@${args.domain}`;
    const rosterStart = performance.now();
    const setResult = await withTimeout(
      a.xmpp.iqCaller.request(
        xml("iq", { type: "set" }, xml("query", { xmlns: NS_ROSTER }, xml("item", { jid: bBare, name: "B" }))),
        step,
      ),
      step,
      "roster set result",
    );
    const rosterIq = await withTimeout(
      a.xmpp.iqCaller.request(xml("iq", { type: "get" }, xml("query", { xmlns: NS_ROSTER })), step),
      step,
      "roster result",
    );
    const query = rosterIq.getChild("query", NS_ROSTER);
    const items = query ? query.getChildren("item") : [];
    result.roster = {
      set_ok: setResult.attrs.type === "result",
      result_received: rosterIq.attrs.type === "result",
      items: items.length,
      contains_b: items.some((item) => item.attrs.jid === bBare),
      ms: elapsed(rosterStart),
    };

    const loginB = await b.login(step);
    result.b = { login_ok: true, ...loginB };
    await a.xmpp.send(xml("presence"));
    await b.xmpp.send(xml("presence"));

    const body = args.body ?? `hello from xmpp.js ${Date.now()}`;
    const msgId = `e2e-${Math.random().toString(36).slice(2, 10)}`;

    const gotMessage = deferred();
    b.xmpp.on("stanza", (stanza) => {
      if (!stanza.is("message") || !stanza.getChild("body")) return;
      const request = Boolean(stanza.getChild("request", NS_RECEIPTS));
      gotMessage.resolve({ body: stanza.getChildText("body"), id: stanza.attrs.id, request, from: stanza.attrs.from });
      if (request) {
        b.xmpp.send(xml("message", { to: stanza.attrs.from, id: `receipt-${msgId}` },
          xml("received", { xmlns: NS_RECEIPTS, id: stanza.attrs.id }))).catch((e) => gotMessage.reject(e));
      }
    });
    const gotReceipt = deferred();
    a.xmpp.on("stanza", (stanza) => {
      const received = stanza.is("message") && stanza.getChild("received", NS_RECEIPTS);
      if (received) gotReceipt.resolve({ id: received.attrs.id, from: stanza.attrs.from });
    });

    const sent = performance.now();
    await a.xmpp.send(xml("message", { to: loginB.jid, type: "chat", id: msgId },
      xml("body", {}, body),
      xml("request", { xmlns: NS_RECEIPTS })));
    result.message = { id: msgId, to: loginB.jid, body_sent: body };

    await awaitDelivery(result, { gotMessage, gotReceipt, sent, body, msgId }, [a, b], step);
  });
}
