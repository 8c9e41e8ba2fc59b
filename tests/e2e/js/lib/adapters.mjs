// One interface over three XMPP libraries (Strophe.js, xmpp.js, StanzaJS), each
// driven through its own public API, so matrix-cell.mjs runs the same scenarios
// with every library. Incoming stanzas are reported as plain objects:
//   message:  { from, id, type, body, receiptRequest, receivedId }
//   presence: { from, type }
// Every wait is bounded by the caller's withTimeout.

import { $iq, $msg, $pres } from "strophe.js";
import { StropheClient, Strophe } from "./strophe.mjs";
import { XmppJsClient, xml } from "./xmppjs.mjs";
import * as Stanza from "stanza";
import { deferred, packageVersion, withTimeout } from "./common.mjs";

export const NS_RECEIPTS = "urn:xmpp:receipts";
export const NS_ROSTER = "jabber:iq:roster";
export const NS_PING = "urn:xmpp:ping";
export const NS_MUC = "http://jabber.org/protocol/muc";
export const NS_MUC_USER = "http://jabber.org/protocol/muc#user";

/** Base: listener lists and helpers shared by the adapters. */
class Base {
  constructor() {
    this.messageListeners = [];
    this.presenceListeners = [];
  }
  onMessage(cb) {
    this.messageListeners.push(cb);
  }
  onPresence(cb) {
    this.presenceListeners.push(cb);
  }
  emitMessage(m) {
    for (const cb of this.messageListeners) cb(m);
  }
  emitPresence(p) {
    for (const cb of this.presenceListeners) cb(p);
  }
  /** Resolves with the first message matching `pred`. */
  nextMessage(pred, ms, what) {
    const d = deferred();
    this.onMessage((m) => {
      if (pred(m)) d.resolve(m);
    });
    return withTimeout(d.promise, ms, what);
  }
  /** Resolves with the first presence matching `pred`. */
  nextPresence(pred, ms, what) {
    const d = deferred();
    this.onPresence((p) => {
      if (pred(p)) d.resolve(p);
    });
    return withTimeout(d.promise, ms, what);
  }
}

// --- Strophe.js ----------------------------------------------------------------

export class StropheAdapter extends Base {
  static library = "strophe.js";
  static version = packageVersion("strophe.js");
  /** Strophe.js 5 has no XEP-0198 support in its core. */
  static streamManagement = false;

  static async login({ url, domain, user, password, resource, mechanism, timeoutMs }) {
    const a = new StropheAdapter();
    a.client = new StropheClient(url, mechanism);
    a.conn = a.client.conn;
    const info = await a.client.login(`${user}@${domain}/${resource}`, password, timeoutMs);
    a.jid = info.jid;
    a.mechanism = info.mechanism;
    a.timeoutMs = timeoutMs;
    a.conn.addHandler((el) => {
      const body = el.getElementsByTagName("body")[0];
      const received = el.getElementsByTagNameNS(NS_RECEIPTS, "received")[0];
      a.emitMessage({
        from: el.getAttribute("from"),
        id: el.getAttribute("id"),
        type: el.getAttribute("type") ?? "normal",
        body: body ? body.textContent : null,
        receiptRequest: el.getElementsByTagNameNS(NS_RECEIPTS, "request").length > 0,
        receivedId: received ? received.getAttribute("id") : null,
      });
      return true;
    }, null, "message");
    a.conn.addHandler((el) => {
      a.emitPresence({ from: el.getAttribute("from"), type: el.getAttribute("type") ?? "available", el });
      return true;
    }, null, "presence");
    return a;
  }

  iq(stanza, what) {
    return withTimeout(new Promise((resolve, reject) => {
      this.conn.sendIQ(stanza, resolve, (e) => reject(new Error(`${what} error: ${e ? Strophe.serialize(e) : "timeout"}`)), this.timeoutMs);
    }), this.timeoutMs, what);
  }

  async rosterSet(jid) {
    const r = await this.iq($iq({ type: "set" }).c("query", { xmlns: NS_ROSTER }).c("item", { jid, name: "B" }), "roster set");
    return r.getAttribute("type") === "result";
  }

  async rosterGet() {
    const r = await this.iq($iq({ type: "get" }).c("query", { xmlns: NS_ROSTER }), "roster get");
    return Array.from(r.getElementsByTagName("item")).map((i) => i.getAttribute("jid"));
  }

  sendPresence(to) {
    this.conn.send(to ? $pres({ to }) : $pres());
  }

  sendMessage({ to, id, body, type = "chat", receipt = false }) {
    const m = $msg({ to, type, id }).c("body").t(body).up();
    if (receipt) m.c("request", { xmlns: NS_RECEIPTS });
    this.conn.send(m);
  }

  sendReceipt(to, id) {
    this.conn.send($msg({ to, id: `receipt-${id}` }).c("received", { xmlns: NS_RECEIPTS, id }));
  }

  async ping(to) {
    const r = await this.iq($iq({ type: "get", to }).c("ping", { xmlns: NS_PING }), "ping");
    return r.getAttribute("type") === "result";
  }

  async joinRoom(room, nick) {
    const self = this.nextPresence((p) => p.from === `${room}/${nick}` && p.type === "available", this.timeoutMs, `join ${room}`);
    this.conn.send($pres({ to: `${room}/${nick}` }).c("x", { xmlns: NS_MUC }));
    await self;
  }

  killSocket() {
    this.conn._proto.socket._socket?.destroy?.();
    this.conn._proto.socket.terminate?.();
  }

  logout() {
    return this.client.logout(this.timeoutMs);
  }
}

// --- xmpp.js (@xmpp/client) -----------------------------------------------------

export class XmppJsAdapter extends Base {
  static library = "@xmpp/client";
  static version = packageVersion("@xmpp/client");
  static streamManagement = true;

  static async login({ url, domain, user, password, resource, mechanism, timeoutMs }) {
    const a = new XmppJsAdapter();
    a.client = new XmppJsClient({ url, domain, username: user, password, resource, mechanism });
    a.xmpp = a.client.xmpp;
    a.timeoutMs = timeoutMs;
    a.xmpp.on("stanza", (el) => {
      if (el.is("message")) {
        const received = el.getChild("received", NS_RECEIPTS);
        a.emitMessage({
          from: el.attrs.from,
          id: el.attrs.id,
          type: el.attrs.type ?? "normal",
          body: el.getChildText("body"),
          receiptRequest: Boolean(el.getChild("request", NS_RECEIPTS)),
          receivedId: received ? received.attrs.id : null,
        });
      } else if (el.is("presence")) {
        a.emitPresence({ from: el.attrs.from, type: el.attrs.type ?? "available", el });
      }
    });
    let info;
    try {
      info = await a.client.login(timeoutMs);
    } catch (err) {
      await a.xmpp.stop().catch(() => {});
      throw err;
    }
    a.jid = info.jid;
    a.mechanism = info.mechanism;
    return a;
  }

  iq(el) {
    return withTimeout(this.xmpp.iqCaller.request(el, this.timeoutMs), this.timeoutMs, "iq");
  }

  async rosterSet(jid) {
    const r = await this.iq(xml("iq", { type: "set" }, xml("query", { xmlns: NS_ROSTER }, xml("item", { jid, name: "B" }))));
    return r.attrs.type === "result";
  }

  async rosterGet() {
    const r = await this.iq(xml("iq", { type: "get" }, xml("query", { xmlns: NS_ROSTER })));
    return (r.getChild("query", NS_ROSTER)?.getChildren("item") ?? []).map((i) => i.attrs.jid);
  }

  sendPresence(to) {
    return this.xmpp.send(xml("presence", to ? { to } : {}));
  }

  sendMessage({ to, id, body, type = "chat", receipt = false }) {
    const children = [xml("body", {}, body)];
    if (receipt) children.push(xml("request", { xmlns: NS_RECEIPTS }));
    return this.xmpp.send(xml("message", { to, id, type }, ...children));
  }

  sendReceipt(to, id) {
    return this.xmpp.send(xml("message", { to, id: `receipt-${id}` }, xml("received", { xmlns: NS_RECEIPTS, id })));
  }

  async ping(to) {
    const r = await this.iq(xml("iq", { type: "get", to }, xml("ping", { xmlns: NS_PING })));
    return r.attrs.type === "result";
  }

  async joinRoom(room, nick) {
    const self = this.nextPresence((p) => p.from === `${room}/${nick}` && p.type === "available", this.timeoutMs, `join ${room}`);
    await this.xmpp.send(xml("presence", { to: `${room}/${nick}` }, xml("x", { xmlns: NS_MUC })));
    await self;
  }

  smState() {
    const sm = this.xmpp.streamManagement;
    return { enabled: sm.enabled, id: sm.id || null };
  }

  /** Destroys the TCP socket under the WebSocket: no close frame, no <close/>. */
  killSocket() {
    this.xmpp.socket.socket.terminate();
  }

  /** Reconnects after killSocket() and resolves true once the server resumed the SM session. */
  async resume() {
    const resumed = deferred();
    this.xmpp.streamManagement.once("resumed", () => resumed.resolve(true));
    if (this.xmpp.status !== "disconnect") {
      const down = deferred();
      this.xmpp.once("disconnect", () => down.resolve());
      await withTimeout(down.promise, this.timeoutMs, "disconnect after kill");
    }
    await withTimeout(this.xmpp.reconnect.reconnect(), this.timeoutMs, "reconnect");
    return withTimeout(resumed.promise, this.timeoutMs, "SM resumed");
  }

  logout() {
    return this.client.logout(this.timeoutMs);
  }
}

// --- StanzaJS --------------------------------------------------------------------

export class StanzaAdapter extends Base {
  static library = "stanza";
  static version = packageVersion("stanza");
  static streamManagement = true;

  static async login({ url, domain, user, password, resource, mechanism, timeoutMs }) {
    const a = new StanzaAdapter();
    a.timeoutMs = timeoutMs;
    a.serverClosed = false;
    a.client = Stanza.createClient({
      jid: `${user}@${domain}`,
      password,
      resource,
      transports: /^https?:/.test(url) ? { websocket: false, bosh: url } : { websocket: url, bosh: false },
      useStreamManagement: true,
      allowResumption: true,
      autoReconnect: false,
      timeout: Math.ceil(timeoutMs / 1000),
    });
    if (mechanism) {
      for (const m of a.client.sasl.mechanisms.map((x) => x.name)) {
        if (m !== mechanism) a.client.sasl.disable(m);
      }
    }
    a.client.on("raw:incoming", (data) => {
      const text = data.trim();
      if (/^<close[\s/>]/.test(text) || /^<body\b[^>]*\stype=["']terminate["']/.test(text)) a.serverClosed = true;
    });
    a.client.on("message", (m) => {
      a.emitMessage({
        from: m.from,
        id: m.id,
        type: m.type ?? "normal",
        body: m.body ?? null,
        receiptRequest: m.receipt?.type === "request",
        receivedId: m.receipt?.type === "received" ? m.receipt.id : null,
      });
    });
    a.client.on("presence", (p) => a.emitPresence({ from: p.from, type: p.type ?? "available", p }));
    const started = deferred();
    a.client.once("session:started", () => started.resolve());
    a.client.once("auth:failed", () => {
      const err = new Error(`SASL failure: ${a.saslCondition}`);
      err.condition = a.saslCondition ?? null;
      started.reject(err);
    });
    // StanzaJS's own parse of the SASL <failure/> carries the RFC 6120 6.5 condition.
    a.client.on("sasl", (sasl) => {
      if (sasl.type === "failure") a.saslCondition = sasl.condition ?? null;
    });
    a.client.once("disconnected", () => started.reject(new Error("disconnected before the session started")));
    a.client.on("raw:outgoing", (data) => {
      const m = /<auth [^>]*mechanism=['"]([A-Z0-9-]+)['"]/.exec(data);
      if (m) a.usedMechanism = m[1];
    });
    a.client.connect();
    try {
      await withTimeout(started.promise, timeoutMs, "session start");
    } catch (err) {
      a.client.disconnect();
      throw err;
    }
    a.jid = a.client.jid;
    a.mechanism = a.usedMechanism ?? null;
    return a;
  }

  async rosterSet(jid) {
    await withTimeout(this.client.updateRosterItem({ jid, name: "B" }), this.timeoutMs, "roster set");
    return true;
  }

  async rosterGet() {
    const r = await withTimeout(this.client.getRoster(), this.timeoutMs, "roster get");
    return (r.items ?? []).map((i) => i.jid);
  }

  sendPresence(to) {
    this.client.sendPresence(to ? { to } : {});
  }

  sendMessage({ to, id, body, type = "chat", receipt = false }) {
    this.client.sendMessage({ to, id, body, type, ...(receipt ? { receipt: { type: "request" } } : {}) });
  }

  sendReceipt(to, id) {
    this.client.sendMessage({ to, id: `receipt-${id}`, receipt: { type: "received", id } });
  }

  async ping(to) {
    await withTimeout(this.client.ping(to), this.timeoutMs, "ping");
    return true;
  }

  async joinRoom(room, nick) {
    await withTimeout(this.client.joinRoom(room, nick), this.timeoutMs, `join ${room}`);
  }

  smState() {
    return { enabled: Boolean(this.client.sm.started), id: this.client.sm.id ?? null };
  }

  killSocket() {
    this.client.transport.socket.terminate();
  }

  async resume() {
    const resumed = deferred();
    this.client.once("stream:management:resumed", () => resumed.resolve(true));
    if (this.client.transport) {
      const down = deferred();
      this.client.once("--transport-disconnected", () => down.resolve());
      await withTimeout(down.promise, this.timeoutMs, "disconnect after kill");
    }
    this.client.connect();
    return withTimeout(resumed.promise, this.timeoutMs, "SM resumed");
  }

  async logout() {
    const start = performance.now();
    const down = deferred();
    this.client.once("--transport-disconnected", () => down.resolve());
    this.client.disconnect();
    await withTimeout(down.promise, this.timeoutMs, "disconnect");
    return { ms: Math.round(performance.now() - start), server_close_seen: this.serverClosed, clean: this.serverClosed };
  }
}

export const ADAPTERS = {
  strophe: StropheAdapter,
  xmppjs: XmppJsAdapter,
  stanza: StanzaAdapter,
};
