// Strophe.js helpers: promise-based login, disconnect and status tracking over
// the Node entry point of strophe.js (which installs the `ws` WebSocket and
// @xmldom/xmldom as the DOM on its own). An http:// or https:// URL makes
// Strophe use BOSH, for which Node has no XMLHttpRequest: xhr2 provides it,
// with the responseXML a browser's has (below).

import { Strophe } from "strophe.js";
import NodeXMLHttpRequest from "xhr2";
import { deferred, elapsed, withTimeout } from "./common.mjs";

export { Strophe };
export const NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing";

/** xhr2 with a browser's responseXML: Strophe's BOSH reads each response's document from it,
 * and its fallback for a missing one parses responseText but then returns nothing. */
class BrowserLikeXMLHttpRequest extends NodeXMLHttpRequest {
  get responseXML() {
    if (this.readyState !== 4 || !this.responseText) return null;
    this.parsedResponse ??= new globalThis.DOMParser().parseFromString(this.responseText, "text/xml");
    return this.parsedResponse;
  }
}
globalThis.XMLHttpRequest ??= BrowserLikeXMLHttpRequest;

const STATUS_NAMES = Object.fromEntries(Object.entries(Strophe.Status).map(([k, v]) => [v, k]));

const MECHANISMS = {
  "SCRAM-SHA-1": Strophe.SASLSHA1,
  PLAIN: Strophe.SASLPlain,
};

/** Whether a raw input is the server's end of the session: RFC 7395's <close/> or a
 * BOSH <body type='terminate'> (XEP-0124 section 13). */
function isServerClose(data) {
  if (/^<close[\s/>]/.test(data)) return data.includes(NS_FRAMING);
  return /^<body\b[^>]*\stype=["']terminate["']/.test(data);
}

/**
 * One Strophe connection with its history of status changes. `statuses` holds
 * the Strophe.Status names seen, `serverClosed` becomes true when the server's
 * <close/> (or over BOSH its terminating <body/>) arrived on the wire (seen
 * through rawInput).
 */
export class StropheClient {
  constructor(url, mechanism) {
    const options = mechanism ? { mechanisms: [MECHANISMS[mechanism]] } : {};
    this.conn = new Strophe.Connection(url, options);
    this.statuses = [];
    this.serverClosed = false;
    this.failure = null;
    this.conn.rawInput = (data) => {
      if (isServerClose(data)) {
        this.serverClosed = true;
        this.serverClose.resolve();
      }
    };
    this.serverClose = deferred();
    this.connected = deferred();
    this.disconnected = deferred();
  }

  /** Logs in; resolves with { ms, mechanism, jid }, rejects with .condition on SASL failure. */
  async login(jid, password, timeoutMs) {
    const start = performance.now();
    this.conn.connect(jid, password, (status, condition, elem) => {
      const name = STATUS_NAMES[status] ?? String(status);
      this.statuses.push(name);
      if (status === Strophe.Status.CONNECTED) {
        this.connected.resolve();
      } else if (status === Strophe.Status.AUTHFAIL) {
        // <failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>
        const cond = elem?.firstElementChild?.nodeName ?? elem?.firstChild?.nodeName ?? condition ?? null;
        this.failure = cond;
        const err = new Error(`SASL failure: ${cond}`);
        err.condition = cond;
        this.connected.reject(err);
      } else if ([Strophe.Status.CONNFAIL, Strophe.Status.ERROR, Strophe.Status.CONNTIMEOUT].includes(status)) {
        this.connected.reject(new Error(`connection failed: ${name} ${condition ?? ""}`.trim()));
      } else if (status === Strophe.Status.DISCONNECTED) {
        this.connected.reject(new Error("disconnected before login completed"));
        this.disconnected.resolve();
      }
    });
    await withTimeout(this.connected.promise, timeoutMs, `login of ${jid}`);
    return {
      ms: elapsed(start),
      mechanism: this.conn._sasl_mechanism?.mechname ?? null,
      jid: this.conn.jid,
    };
  }

  /**
   * Disconnects and reports whether it was clean: the server's <close/> arrived,
   * Strophe reached DISCONNECTED, and no CONNFAIL/ERROR status was seen.
   */
  async logout(timeoutMs) {
    const start = performance.now();
    // Strophe's WebSocket transport sends <close/> and closes the socket on the
    // next tick, without waiting for the server's <close/> (RFC 7395 3.6). Hold
    // the socket close until the server's <close/> arrived (or a 2 s grace), so
    // "clean" means the server really answered the close, deterministically.
    const conn = this.conn;
    const closeSocket = conn._doDisconnect.bind(conn);
    let scheduled = false;
    conn._doDisconnect = (condition) => {
      if (this.serverClosed) return closeSocket(condition);
      if (scheduled) return undefined;
      scheduled = true;
      withTimeout(this.serverClose.promise, 2000, "server <close/>")
        .catch(() => {})
        .finally(() => closeSocket(condition));
      return undefined;
    };
    this.conn.disconnect("end of scenario");
    await withTimeout(this.disconnected.promise, timeoutMs, "disconnect");
    const errors = this.statuses.filter((s) => ["CONNFAIL", "ERROR", "CONNTIMEOUT"].includes(s));
    return {
      ms: elapsed(start),
      server_close_seen: this.serverClosed,
      statuses: this.statuses,
      clean: this.serverClosed && errors.length === 0,
    };
  }
}
