// One cell of the interop matrix: every scenario with one library against one
// URL (gateway or nginx in front of it), for two accounts, in one process. A
// ws:// or wss:// URL is a WebSocket (RFC 7395), an http:// one BOSH (XEP-0206).
//
//   node matrix-cell.mjs --client strophe|xmppjs|stanza --url ws://… --domain e2e.test \
//     --user-a … --password-a … --user-b … --password-b … --room room@conference.e2e.test
//
// Prints one JSON line: { ok, client, library, library_version,
//   scenarios: [{ name, ok, skipped, ms, error, detail }] }. ok is true when no
// scenario failed (skipped ones, which the library cannot do, do not count).

import { parseArgs } from "node:util";
import { ADAPTERS } from "./lib/adapters.mjs";
import { elapsed, finish, withTimeout } from "./lib/common.mjs";

const result = { ok: false, error: null, scenarios: [] };
let args;
try {
  ({ values: args } = parseArgs({
    options: {
      client: { type: "string" },
      url: { type: "string" },
      domain: { type: "string" },
      "user-a": { type: "string" },
      "password-a": { type: "string" },
      "user-b": { type: "string" },
      "password-b": { type: "string" },
      room: { type: "string" },
      "timeout-ms": { type: "string", default: "10000" },
    },
    strict: true,
  }));
  for (const k of ["client", "url", "domain", "user-a", "password-a", "user-b", "password-b", "room"]) {
    if (!args[k]) throw new Error(`missing --${k}`);
  }
  if (!ADAPTERS[args.client]) throw new Error(`unknown --client ${args.client}`);
} catch (err) {
  result.error = `usage: ${err.message}`;
  finish(result);
}

if (args) {
  const Lib = ADAPTERS[args.client];
  Object.assign(result, { client: args.client, library: Lib.library, library_version: Lib.version });
  const step = Number(args["timeout-ms"]);
  const { url, domain, room } = args;
  const A = { user: args["user-a"], password: args["password-a"] };
  const B = { user: args["user-b"], password: args["password-b"] };
  const tag = Math.random().toString(36).slice(2, 8);
  const login = (who, resource, mechanism, extra = {}) =>
    Lib.login({ url, domain, user: who.user, password: who.password, resource, mechanism, timeoutMs: step, ...extra });
  const check = (cond, what) => {
    if (!cond) throw new Error(what);
  };

  /** Runs one scenario; a failure is recorded and the next scenario still runs. */
  async function scenario(name, fn, { skip = null } = {}) {
    const entry = { name, ok: false, skipped: false, ms: 0, error: null, detail: null };
    result.scenarios.push(entry);
    if (skip) {
      Object.assign(entry, { ok: true, skipped: true, detail: skip });
      return;
    }
    const start = performance.now();
    try {
      entry.detail = (await withTimeout(Promise.resolve().then(fn), 4 * step, name)) ?? null;
      entry.ok = true;
    } catch (err) {
      // Libraries reject with an Error, or (StanzaJS) with the error stanza itself.
      entry.error = err instanceof Error ? err.message : JSON.stringify(err);
      console.error(`[${args.client}] ${name}:`, err);
    }
    entry.ms = elapsed(start);
  }

  const deadline = setTimeout(() => {
    result.error = "cell deadline exceeded";
    finish(result);
  }, 30 * step);

  let a = null;
  let b = null;
  await scenario("login SCRAM-SHA-1", async () => {
    a = await login(A, "a", "SCRAM-SHA-1");
    b = await login(B, "b", "SCRAM-SHA-1");
    check(a.mechanism === "SCRAM-SHA-1" && b.mechanism === "SCRAM-SHA-1", `mechanisms ${a.mechanism}, ${b.mechanism}`);
    return { a: a.jid, b: b.jid };
  });
  const ready = () => check(a && b, "no session (login failed)");

  await scenario("roster", async () => {
    ready();
    const bBare = `${B.user}@${domain}`;
    check(await a.rosterSet(bBare), "roster set not acknowledged");
    const items = await a.rosterGet();
    check(items.includes(bBare), `roster ${JSON.stringify(items)} lacks ${bBare}`);
    return { items: items.length };
  });

  await scenario("presence", async () => {
    ready();
    // Directed presence (RFC 6121 4.6): no subscription needed, delivered to B's full JID.
    const seen = b.nextPresence((p) => p.from === a.jid && p.type === "available", step, "A's presence at B");
    a.sendPresence(b.jid);
    await seen;
  });

  await scenario("message + receipt", async () => {
    ready();
    const id = `m-${tag}`;
    const body = `héllo <&> ${tag}`;
    const atB = b.nextMessage((m) => m.id === id, step, "message at B");
    const receipt = a.nextMessage((m) => m.receivedId === id, step, "receipt at A");
    b.onMessage((m) => {
      if (m.id === id && m.receiptRequest) b.sendReceipt(m.from, id);
    });
    a.sendMessage({ to: b.jid, id, body, receipt: true });
    const m = await atB;
    check(m.body === body, `body changed: ${m.body}`);
    check(m.from === a.jid, `from ${m.from}`);
    check(m.receiptRequest, "receipt request lost");
    const r = await receipt;
    check(r.from === b.jid, `receipt from ${r.from}`);
  });

  await scenario("ping (XEP-0199)", async () => {
    ready();
    check(await a.ping(domain), "ping not answered with a result");
  });

  await scenario("MUC join + groupchat", async () => {
    ready();
    const roomJid = `${room.split("@")[0]}-${args.client}-${tag}@${room.split("@")[1]}`;
    await a.joinRoom(roomJid, "nick-a");
    await b.joinRoom(roomJid, "nick-b");
    const id = `g-${tag}`;
    const atB = b.nextMessage((m) => m.id === id && m.type === "groupchat", step, "groupchat at B");
    a.sendMessage({ to: roomJid, id, body: `to the room ${tag}`, type: "groupchat" });
    const m = await atB;
    check(m.from === `${roomJid}/nick-a`, `groupchat from ${m.from}`);
    return { room: roomJid };
  });

  await scenario("logout", async () => {
    ready();
    const [da, db] = await Promise.all([a.logout(), b.logout()]);
    check(da.server_close_seen && db.server_close_seen, "server <close/> not seen");
    check(da.clean && db.clean, "close not clean");
    a = b = null;
  });

  await scenario("login PLAIN", async () => {
    const p = await login(A, "plain", "PLAIN");
    check(p.mechanism === "PLAIN", `mechanism ${p.mechanism}`);
    const d = await p.logout();
    check(d.clean, "close after PLAIN login not clean");
  });

  const overBosh = /^https?:/.test(url);
  const smSkip = !Lib.streamManagement
    ? `${Lib.library} has no XEP-0198 support`
    : overBosh ? "over BOSH there is no socket to kill (tests/bosh.rs covers a lost BOSH client)" : null;
  await scenario("SM resume (XEP-0198)", async () => {
    const sa = await login(A, "sm-a", "SCRAM-SHA-1");
    const sb = await login(B, "sm-b", "SCRAM-SHA-1");
    try {
      const sm = sa.smState();
      check(sm.enabled && sm.id, `stream management not enabled: ${JSON.stringify(sm)}`);
      const id = `sm-${tag}`;
      const marker = `sm-marker-${tag}`;
      const copies = [];
      sa.onMessage((m) => {
        if (m.id === id) copies.push(m);
      });
      const gotMarker = sa.nextMessage((m) => m.id === marker, 3 * step, "marker after resume");
      sa.killSocket();
      // Sent while A's WebSocket is dead: the server holds it in A's SM session.
      sb.sendMessage({ to: sa.jid, id, body: `while you were away ${tag}` });
      // B's own round trip proves the server has handled the message before A resumes.
      await sb.ping(domain);
      const resumed = await sa.resume();
      check(resumed, "session not resumed");
      sb.sendMessage({ to: sa.jid, id: marker, body: "marker" });
      await gotMarker;
      check(copies.length === 1, `message delivered ${copies.length} times`);
      return { sm_id: sm.id, copies: copies.length };
    } finally {
      await Promise.allSettled([sa.logout(), sb.logout()]);
    }
  }, { skip: smSkip });

  await scenario("wrong password", async () => {
    const start = performance.now();
    let condition = null;
    try {
      const c = await login({ user: A.user, password: `${A.password}-wrong` }, "wrong", "SCRAM-SHA-1");
      await c.logout().catch(() => {});
    } catch (err) {
      condition = err.condition ?? null;
      if (!condition) throw err;
    }
    check(condition === "not-authorized", `condition ${condition}`);
    const ms = elapsed(start);
    check(ms < 5000, `refusal took ${ms} ms`);
    return { condition };
  });

  clearTimeout(deadline);
  result.ok = result.scenarios.every((s) => s.ok);
  if (!result.ok) result.error = result.scenarios.filter((s) => !s.ok).map((s) => `${s.name}: ${s.error}`).join("; ");
  finish(result);
}
