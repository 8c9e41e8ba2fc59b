// Shared plumbing for the end-to-end client scripts: argument parsing, timing,
// the overall deadline and the single JSON result line.
//
// Contract with tests/harness/e2e.rs: every script prints exactly one JSON object
// as its LAST stdout line, exits 0 when the scenario's expectation held and 1
// otherwise (the JSON then carries "ok": false and "error"). Diagnostics go to stderr.

import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";

const started = performance.now();

// Libraries log through console.log/info/debug (Strophe does); keep stdout for the
// result line alone.
for (const level of ["log", "info", "debug"]) {
  console[level] = (...args) => console.error(...args);
}

/** Milliseconds since the script started, rounded to 0.1 ms. */
export function elapsed(since = started) {
  return Math.round((performance.now() - since) * 10) / 10;
}

/** Version of an installed npm package, read from its package.json. */
export function packageVersion(name) {
  const url = new URL(`../node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(url, "utf8")).version;
}

/**
 * Parses the common command line. Chat scenarios need --user-a/--password-a and
 * --user-b/--password-b; the wrong-password scenario needs --user/--password.
 */
export function parseCommonArgs() {
  const { values } = parseArgs({
    options: {
      url: { type: "string" },
      domain: { type: "string" },
      "user-a": { type: "string" },
      "password-a": { type: "string" },
      "user-b": { type: "string" },
      "password-b": { type: "string" },
      user: { type: "string" },
      password: { type: "string" },
      // SCRAM-SHA-1 or PLAIN; absent means the library's default choice.
      mechanism: { type: "string" },
      body: { type: "string" },
      "timeout-ms": { type: "string", default: "20000" },
    },
    strict: true,
  });
  for (const required of ["url", "domain"]) {
    if (!values[required]) throw new Error(`missing --${required}`);
  }
  if (values.mechanism && !["SCRAM-SHA-1", "PLAIN"].includes(values.mechanism)) {
    throw new Error(`--mechanism must be SCRAM-SHA-1 or PLAIN, not ${values.mechanism}`);
  }
  const timeoutMs = Number(values["timeout-ms"]);
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new Error("bad --timeout-ms");
  return { ...values, timeoutMs };
}

/** Rejects after `ms` with a message naming what was awaited. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A promise plus its resolve/reject, for events that arrive through callbacks. */
export function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

let printed = false;

/** Prints the result line once and exits with 0 when result.ok, else 1. */
export function finish(result) {
  if (printed) return;
  printed = true;
  result.total_ms = elapsed();
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(result.ok ? 0 : 1));
}

/**
 * Runs `scenario(result)` under an overall deadline. `result` is the object that
 * will be printed; the scenario fills it in as it goes so a failure still shows
 * how far it got. Sets ok=true only if the scenario resolves.
 */
export async function run(result, timeoutMs, scenario) {
  result.ok = false;
  result.error = null;
  const deadline = setTimeout(() => {
    result.error = `overall timeout of ${timeoutMs} ms exceeded`;
    finish(result);
  }, timeoutMs);
  try {
    await scenario(result);
    result.ok = true;
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
    console.error(err);
  } finally {
    clearTimeout(deadline);
  }
  finish(result);
}

process.on("unhandledRejection", (err) => {
  console.error("unhandled rejection:", err);
});

/** parseCommonArgs, but a bad command line still ends in a JSON line (and exit 1). */
export function argsOrFinish(result) {
  try {
    return parseCommonArgs();
  } catch (err) {
    result.ok = false;
    result.error = `usage: ${err.message}`;
    finish(result);
    return null;
  }
}

/**
 * The start of a client-library scenario: its result object (library, version, scenario, the
 * mechanism asked for) and the parsed command line, or `args` null after a usage error has been
 * reported and the process is finishing.
 */
export function startScenario(library, scenario) {
  const result = { library, library_version: packageVersion(library), scenario };
  const args = argsOrFinish(result);
  if (args) result.mechanism_requested = args.mechanism ?? null;
  return { result, args };
}

/**
 * The end of a chat scenario, whatever the library: waits for the message at B and the receipt
 * at A (recording both in `result.message` and `result.receipt`), logs both clients out
 * (`result.disconnect`), and throws if the body or the receipt's id is not what was sent.
 * `gotMessage` resolves to { body, id, request, from }, `gotReceipt` to { id, from }; `sent` is
 * when the message was sent (performance.now()); `a` and `b` have logout(step).
 */
export async function awaitDelivery(result, { gotMessage, gotReceipt, sent, body, msgId }, [a, b], step) {
  const m = await withTimeout(gotMessage.promise, step, "message at B");
  Object.assign(result.message, {
    received: true,
    body_received: m.body,
    id_received: m.id,
    receipt_requested: m.request,
    from: m.from,
    ms: elapsed(sent),
  });
  const r = await withTimeout(gotReceipt.promise, step, "receipt at A");
  result.receipt = { received: true, id: r.id, from: r.from, ms: elapsed(sent) };

  const [da, db] = await Promise.all([a.logout(step), b.logout(step)]);
  result.disconnect = { a: da, b: db, clean: da.clean && db.clean };
  if (!result.disconnect.clean) throw new Error("disconnect was not clean");
  if (m.body !== body) throw new Error("body changed in transit");
  if (r.id !== msgId) throw new Error("receipt id does not match the message id");
}
