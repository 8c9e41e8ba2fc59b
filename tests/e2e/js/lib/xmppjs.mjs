// xmpp.js helpers. Node 20 has no global WebSocket, and @xmpp/websocket 0.14
// uses globalThis.WebSocket, so install the `ws` implementation first.

import WebSocket from "ws";
import { client, xml } from "@xmpp/client";
import { elapsed, withTimeout } from "./common.mjs";

globalThis.WebSocket ??= WebSocket;

export { xml };

/**
 * One xmpp.js client with its history: `statuses` lists the status events,
 * `errors` the error messages, `mechanism` the SASL mechanism used.
 */
export class XmppJsClient {
  constructor({ url, domain, username, password, resource, mechanism }) {
    this.mechanism = null;
    this.statuses = [];
    this.errors = [];
    this.xmpp = client({
      service: url,
      domain,
      resource,
      credentials: async (authenticate, offered) => {
        // Default: xmpp.js's own rule (first offered mechanism on a secure transport).
        const chosen = mechanism ?? offered[0];
        if (!offered.includes(chosen)) throw new Error(`server did not offer ${chosen} (offered: ${offered.join(" ")})`);
        this.mechanism = chosen;
        await authenticate({ username, password }, chosen);
      },
    });
    // A test must see failures, not have them papered over by reconnection.
    this.xmpp.reconnect.stop();
    this.xmpp.on("status", (status) => this.statuses.push(status));
    this.xmpp.on("error", (err) => this.errors.push(err.message ?? String(err)));
  }

  /** Logs in; resolves with { ms, mechanism, jid }; rejects with .condition on SASL failure. */
  async login(timeoutMs) {
    const start = performance.now();
    const address = await withTimeout(this.xmpp.start(), timeoutMs, "login");
    return { ms: elapsed(start), mechanism: this.mechanism, jid: address.toString() };
  }

  /**
   * Stops the client and reports whether the close was clean: xmpp.stop()
   * resolved with the server's <close/> element (the parser's stream end), the
   * socket then closed cleanly (WebSocket close handshake, wasClean) and no
   * error event fired. (The "close" status's own `clean` flag is not used: the
   * parser's "end" listener passes the <close/> element as the "dirty" argument.)
   */
  async logout(timeoutMs) {
    const start = performance.now();
    const closes = [];
    this.xmpp.on("close", (info) => closes.push(info));
    const disconnects = [];
    this.xmpp.on("disconnect", (info) => disconnects.push(info));
    const errorsBefore = this.errors.length;
    const el = await withTimeout(this.xmpp.stop(), timeoutMs, "stop");
    const serverClose = el?.name === "close";
    const streamEnded = closes.length > 0;
    const socketClean = disconnects.length > 0 && disconnects.every((d) => d.clean);
    return {
      ms: elapsed(start),
      server_close_seen: serverClose,
      stream_end_seen: streamEnded,
      socket_closed_clean: socketClean,
      statuses: this.statuses,
      errors: this.errors.slice(errorsBefore),
      clean: serverClose && streamEnded && socketClean && this.errors.length === errorsBefore,
    };
  }
}
