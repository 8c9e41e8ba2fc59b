// Fault scenario driven from tests/faults.rs: the gateway gets SIGTERM during a message burst,
// and XEP-0198 stream management resume through a second gateway loses and duplicates nothing.
//
//   --url-a U --url-b U --domain D --user-a --password-a --user-b --password-b
//   --gateway-a-pid N [--count 1000] [--kill-after 300] [--timeout-ms 60000]
//
// Two StanzaJS clients (stream management with resumption; StanzaJS re-sends its unacked stanzas
// after <resumed/>, which is what makes "nothing lost" possible): A sends, B receives. Both log
// in through gateway A and have <enabled/> before the first burst message, so B's counter cannot
// race with its first stanzas. A sends `count` chat messages to B's full JID, each with its
// sequence number as id (burst-<n>), as fast as StanzaJS writes them, keeping at most WINDOW of
// them on their way to B (see WINDOW). After `kill-after` of them the script sends SIGTERM to
// gateway A and keeps sending: the messages handed to the library before the close is seen go
// into the old socket or StanzaJS's unacked queue. Each client, when its transport is gone,
// reconnects through gateway B and resumes (<resume previd h/>). The app itself pauses between
// seeing the close and both resumptions: StanzaJS would otherwise write new stanzas into the
// fresh stream before <resumed/> (untracked, before authentication), and Prosody would queue
// messages for B while B is still away; neither is the gateway's behaviour under test.
//
// Counts: sent (messages handed to the library by the app), accepted (messages covered by the
// server's final XEP-0198 h for A's session), received (distinct sequence numbers at B) and
// duplicates (copies beyond the first). A final marker message, sent after everything was acked,
// bounds the wait: delivery from A to B is in order, so once the marker is in, any copy of an
// earlier message would be in too.
//
// Prints one JSON line (common.mjs contract).

import { EventEmitter } from "node:events";
import { parseArgs } from "node:util";
import { StanzaAdapter } from "./lib/adapters.mjs";
import { deferred, elapsed, run, withTimeout } from "./lib/common.mjs";

const { values: args } = parseArgs({
  options: {
    "url-a": { type: "string" },
    "url-b": { type: "string" },
    domain: { type: "string" },
    "user-a": { type: "string" },
    "password-a": { type: "string" },
    "user-b": { type: "string" },
    "password-b": { type: "string" },
    "gateway-a-pid": { type: "string" },
    count: { type: "string", default: "1000" },
    "kill-after": { type: "string", default: "300" },
    "timeout-ms": { type: "string", default: "60000" },
  },
  strict: true,
});
const count = Number(args.count);
const killAfter = Number(args["kill-after"]);
const overallMs = Number(args["timeout-ms"]);
// One step (login, resume, the final acks) may take this long.
const stepMs = 15000;
// At most this many messages sent but not yet at the receiver. Prosody's mod_smacks keeps at
// most smacks_max_queue_size (default 500) unacked stanzas for a session; more while the receiver
// is away and its resumption fails with <failed/> + resource-constraint, which is Prosody's
// documented limit, not the gateway's doing. Without the window StanzaJS writes the 1000 messages
// in ~150 ms, far faster than the receiving StanzaJS parses them.
const WINDOW = 200;

const result = { ok: false, error: null, count, kill_after: killAfter };

/** Per client: how the session through gateway A ended and how it came back through B. */
function watch(adapter, name) {
  const client = adapter.client;
  const info = { name, system_shutdown_seen: false, close_seen: false, ws_close_code: null, resumed: false, resume_ms: null };
  result[name] = info;
  let online = true;
  let downAt = null;
  // One deferred per outage: resolved when that outage ends with a resumption.
  let back = deferred();
  const firstResumption = back.promise;
  const t0 = performance.now();
  const trace = (what) => console.error(`[${(performance.now() - t0).toFixed(1)} ms] ${name}: ${what}`);
  info.resumptions = 0;
  client.on("raw:incoming", (data) => {
    if (data.includes("system-shutdown")) info.system_shutdown_seen = true;
    if (/^<close[\s/>]/.test(data.trim())) info.close_seen = true;
  });
  const socket = client.transport.socket;
  socket.addEventListener("close", (ev) => {
    if (info.ws_close_code === null) info.ws_close_code = ev.code;
  });
  // The earliest sign the transport is gone (runs synchronously inside StanzaJS's emit): stop
  // handing stanzas to the library until the session is resumed.
  client.on("--transport-disconnected", () => {
    trace(`transport disconnected (online ${online})`);
    if (online) {
      online = false;
      downAt = performance.now();
      if (info.resumptions > 0) back = deferred();
    }
  });
  client.on("connected", () => trace("websocket open"));
  client.on("stream:end", () => trace("<close/> from the gateway"));
  info.downAt = () => downAt;
  // Emitted after StanzaJS hibernated its SM state (unacked stanzas kept): resume through B.
  client.on("disconnected", async () => {
    trace(`disconnected (terminating ${client.sessionTerminating})`);
    if (client.sessionTerminating) return;
    const resumed = deferred();
    client.once("stream:management:resumed", () => resumed.resolve());
    client.once("stream:management:failed", () => resumed.reject(new Error(`${name}: resumption failed`)));
    client.config.transports.websocket = args["url-b"];
    client.connect();
    try {
      await withTimeout(resumed.promise, stepMs, `${name} resumed through gateway B`);
      trace("resumed");
      info.resumed = true;
      info.resumptions += 1;
      info.resume_ms = elapsed(downAt);
      info.sm_after = { id: client.sm.id, started: client.sm.started };
      online = true;
      back.resolve();
    } catch (err) {
      back.reject(err);
    }
  });
  // StanzaJS reports <failed/> through its 'sm' event.
  client.on("sm", (sm) => {
    if (sm.type === "resumed") {
      // Runs before StanzaJS processes <resumed/>: its unacked list is still the old one.
      info.server_h_at_resume = sm.handled;
      info.own_h_at_resume = client.sm.handled;
      info.resent = client.sm.unacked.length - (sm.handled - client.sm.lastAck);
      trace(`<resumed h=${sm.handled}>: unacked ${client.sm.unacked.length}, lastAck ${client.sm.lastAck}`);
    }
    if (sm.type === "failed") {
      info.failed = true;
      client.emit("stream:management:failed");
    }
  });
  return {
    info,
    get online() {
      return online;
    },
    /** Resolves once the session is usable again (at once if it never went down). */
    ready: () => (online ? Promise.resolve() : back.promise),
    /** Resolves once the session went down and was resumed. */
    resumed: () => firstResumption,
  };
}

/** Resolves when `cond()` holds, re-checked whenever `wake` fires; bounded by `ms`. */
function until(cond, wake, ms, what) {
  if (cond()) return Promise.resolve();
  const d = deferred();
  const check = () => {
    if (cond()) {
      wake.off("tick", check);
      d.resolve();
    }
  };
  wake.on("tick", check);
  return withTimeout(d.promise, ms, what).finally(() => wake.off("tick", check));
}

async function scenario() {
  const started = performance.now();
  const common = { url: args["url-a"], domain: args.domain, mechanism: "SCRAM-SHA-1", timeoutMs: stepMs };
  const receiver = await StanzaAdapter.login({ ...common, user: args["user-b"], password: args["password-b"], resource: "burst-rx" });
  const sender = await StanzaAdapter.login({ ...common, user: args["user-a"], password: args["password-a"], resource: "burst-tx" });
  // session:started can come before <enabled/>: wait for it (bounded), before any message.
  for (const [n, a] of [["receiver", receiver], ["sender", sender]]) {
    const deadline = performance.now() + stepMs;
    while (!(a.smState().enabled && a.smState().id) && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const sm = a.smState();
    if (!sm.enabled || !sm.id) throw new Error(`${n}: stream management not enabled: ${JSON.stringify(sm)}`);
  }
  result.login_ms = elapsed(started);
  const rx = watch(receiver, "receiver");
  const tx = watch(sender, "sender");
  const sm = sender.client.sm;
  // Wakes the waits below on every receipt, ack and resumption.
  const wake = new EventEmitter();
  const tick = () => wake.emit("tick");
  sender.client.on("stream:management:ack", tick);
  sender.client.on("stream:management:resumed", tick);
  receiver.client.on("stream:management:resumed", tick);

  // The server's h before the burst: the sender's stanzas so far (none expected; measured anyway).
  sm.request();
  await new Promise((r) => setTimeout(r, 200));
  const base = sm.lastAck;
  result.server_h_before = base;

  // Receiver: distinct sequence numbers and copies.
  const copies = new Map();
  let duplicates = 0;
  const marker = deferred();
  receiver.client.on("message", (m) => {
    const id = m.id ?? "";
    if (id === "burst-marker") marker.resolve();
    const match = /^burst-(\d+)$/.exec(id);
    if (!match) return;
    const n = Number(match[1]);
    const c = (copies.get(n) ?? 0) + 1;
    copies.set(n, c);
    if (c > 1) duplicates += 1;
    tick();
  });
  let failedStanzas = 0;
  sender.client.on("stanza:failed", () => (failedStanzas += 1));

  const to = receiver.client.jid;
  let sent = 0;
  let killedAt = null;
  let windowWaits = 0;
  const burstStart = performance.now();
  while (sent < count) {
    if (!tx.online || !rx.online) {
      // Wait for both resumptions (see the header comment), then continue the burst. The
      // setImmediate keeps this loop from ever spinning on microtasks alone.
      result.sent_before_pause = result.sent_before_pause ?? sent;
      await new Promise((r) => setImmediate(r));
      await withTimeout(Promise.all([tx.ready(), rx.ready()]), 2 * stepMs, "both sessions resumed");
      continue;
    }
    if (sent - copies.size >= WINDOW) {
      windowWaits += 1;
      await until(() => sent - copies.size < WINDOW || !tx.online || !rx.online, wake, 2 * stepMs, "the receiver to catch up");
      continue;
    }
    sent += 1;
    await sender.client.send("message", { to, id: `burst-${sent}`, type: "chat", body: `burst message ${sent}` });
    if (sent === killAfter) {
      killedAt = performance.now();
      result.killed_at_epoch_ms = Date.now();
      process.kill(Number(args["gateway-a-pid"]), "SIGTERM");
    }
  }
  result.burst_ms = elapsed(burstStart);
  result.window_waits = windowWaits;
  // Both must go through the fault. The burst may outrun the close: what was written after
  // gateway A stopped reading stays unacked and is re-sent after the resumption, the case this
  // scenario is about.
  await withTimeout(Promise.all([tx.resumed(), rx.resumed()]), 2 * stepMs, "both sessions resumed");
  for (const info of [result.sender, result.receiver]) {
    info.down_ms_after_kill = Math.round(info.downAt() - killedAt);
    delete info.downAt;
  }

  // Accepted = what the server's h covers. XEP-0198 counts stanzas in the order they were sent,
  // and StanzaJS re-sends the unacked ones in order before anything new (the app paused), so the
  // first h - base of burst-1..burst-N are the ones the server handled. (StanzaJS's own
  // stanza:acked events are not usable: it does not track the stanzas it re-sends after
  // <resumed/>, so acks after a resumption are attributed to the wrong stanzas.)
  const ackedNow = () => sm.lastAck - base;
  await until(() => ackedNow() >= sent, wake, stepMs, "the server to ack every message").catch(() => {});
  const poll = setInterval(() => sm.request(), 200);
  await until(() => ackedNow() >= sent, wake, stepMs, "the server to ack every message").catch(() => {});
  clearInterval(poll);
  result.server_h = sm.lastAck;
  const acceptedCount = Math.min(ackedNow(), sent);
  if (ackedNow() > sent) throw new Error(`the server acked ${ackedNow()} stanzas, more than the ${sent} messages sent`);

  sender.client.sendMessage({ to, id: "burst-marker", type: "chat", body: "end of burst" });
  await withTimeout(marker.promise, stepMs, "the end-of-burst marker at the receiver");

  const received = [...copies.keys()];
  const missing = [];
  for (let n = 1; n <= acceptedCount; n += 1) if (!copies.has(n)) missing.push(n);
  const unexpected = received.filter((n) => n > acceptedCount).sort((a, b) => a - b);
  Object.assign(result, {
    sent,
    accepted: acceptedCount,
    received: received.length,
    duplicates,
    failed_stanzas: failedStanzas,
    missing: missing.slice(0, 20),
    missing_count: missing.length,
    received_not_accepted: unexpected.slice(0, 20),
    kill_to_end_ms: killedAt === null ? null : elapsed(killedAt),
  });

  await Promise.allSettled([sender.logout(), receiver.logout()]);
  if (missing.length || unexpected.length || duplicates) {
    throw new Error(`accepted and received differ: missing ${missing.length}, not accepted ${unexpected.length}, duplicates ${duplicates}`);
  }
}

await run(result, overallMs, async () => {
  for (const k of ["url-a", "url-b", "domain", "user-a", "password-a", "user-b", "password-b", "gateway-a-pid"]) {
    if (!args[k]) throw new Error(`missing --${k}`);
  }
  await scenario();
});
