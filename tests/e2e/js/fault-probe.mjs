// Fault scenarios driven from tests/faults.rs. Prints one JSON line.
//
//   --mode open --url U --domain D
//       Raw RFC 7395 client: sends <open/> and records every message and the
//       WebSocket close (code, reason) and how long it all took. Used with a dead
//       DNS server: the gateway must answer promptly with <remote-connection-failed/>.
//   --mode server-kill --url U --domain D --user --password --kill-pgid N
//       xmpp.js logs in, then kills the server (SIGKILL to process group N) and
//       records how the session ends: the WebSocket close code and reason, and
//       whether a <close/> (or any stream error) arrived before it.
//   --mode login --url U --domain D --user --password
//       xmpp.js logs in and logs out cleanly (the reconnect after a fault).

import { parseArgs } from "node:util";
import WebSocket from "ws";
import { XmppJsClient } from "./lib/xmppjs.mjs";
import { deferred, elapsed, finish, withTimeout } from "./lib/common.mjs";

const { values: args } = parseArgs({
  options: {
    mode: { type: "string" },
    url: { type: "string" },
    domain: { type: "string" },
    user: { type: "string" },
    password: { type: "string" },
    "kill-pgid": { type: "string" },
    "timeout-ms": { type: "string", default: "15000" },
  },
  strict: true,
});
const timeoutMs = Number(args["timeout-ms"]);
const result = { mode: args.mode, ok: false, error: null };

async function rawOpen() {
  const start = performance.now();
  const ws = new WebSocket(args.url, "xmpp");
  const closed = deferred();
  result.messages = [];
  ws.on("open", () => {
    ws.send(`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="${args.domain}" version="1.0"/>`);
  });
  ws.on("message", (data) => result.messages.push(data.toString()));
  ws.on("close", (code, reason) => closed.resolve({ code, reason: reason.toString() }));
  ws.on("error", (err) => closed.reject(err));
  const c = await withTimeout(closed.promise, timeoutMs, "close from the gateway");
  Object.assign(result, { close_code: c.code, close_reason: c.reason, elapsed_ms: elapsed(start) });
}

async function serverKill() {
  const c = new XmppJsClient({
    url: args.url, domain: args.domain, username: args.user, password: args.password, resource: "fault",
  });
  const login = await c.login(timeoutMs);
  result.login = login;
  const inputs = [];
  c.xmpp.on("input", (data) => inputs.push(data));
  const closed = deferred();
  c.xmpp.socket.socket.on("close", (code, reason) => closed.resolve({ code, reason: reason.toString() }));
  const killedAt = performance.now();
  process.kill(-Number(args["kill-pgid"]), "SIGKILL");
  const cl = await withTimeout(closed.promise, timeoutMs, "WebSocket close after the server was killed");
  Object.assign(result, {
    close_code: cl.code,
    close_reason: cl.reason,
    close_ms_after_kill: elapsed(killedAt),
    close_element_seen: inputs.some((d) => /<close[\s/>]/.test(d)),
    stream_error_seen: inputs.some((d) => /stream:error|<error xmlns="http:\/\/etherx/.test(d)),
    inputs_after_kill: inputs,
  });
  await c.xmpp.stop().catch(() => {});
}

async function loginLogout() {
  const c = new XmppJsClient({
    url: args.url, domain: args.domain, username: args.user, password: args.password, resource: "again",
  });
  result.login = await c.login(timeoutMs);
  result.logout = await c.logout(timeoutMs);
  if (!result.logout.clean) throw new Error("logout not clean");
}

const modes = { open: rawOpen, "server-kill": serverKill, login: loginLogout };
try {
  if (!modes[args.mode]) throw new Error(`unknown --mode ${args.mode}`);
  await modes[args.mode]();
  result.ok = true;
} catch (err) {
  result.error = err instanceof Error ? err.message : String(err);
  console.error(err);
}
finish(result);
