// The Converse.js cell of the interop matrix: Converse in headless Chromium
// (Debian's /usr/bin/chromium driven by playwright-core), on a page served here
// on loopback, logs in as A through the gateway's WebSocket URL. Checks what the
// page shows: B in the roster, and a chat message that B (xmpp.js, through the
// same URL) sends to A. Prints one JSON line in the matrix-cell.mjs format.
//
//   node converse-cell.mjs --url ws://… --domain e2e.test --user-a … --password-a …
//     --user-b … --password-b … --page-port N [--chromium /usr/bin/chromium]

import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { XmppJsAdapter } from "./lib/adapters.mjs";
import { elapsed, finish, packageVersion, withTimeout } from "./lib/common.mjs";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    domain: { type: "string" },
    "user-a": { type: "string" },
    "password-a": { type: "string" },
    "user-b": { type: "string" },
    "password-b": { type: "string" },
    "page-port": { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    "timeout-ms": { type: "string", default: "20000" },
  },
  strict: true,
});
const step = Number(args["timeout-ms"]);
const result = {
  ok: false, error: null, client: "converse", library: "converse.js",
  library_version: packageVersion("converse.js"), scenarios: [],
};

// --- a static server for the page and Converse's dist/ ---------------------------------
const here = new URL(".", import.meta.url).pathname;
const roots = { "/dist/": join(here, "node_modules/converse.js/dist/"), "/": join(here, "converse/") };
const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".json": "application/json",
  ".wasm": "application/wasm", ".svg": "image/svg+xml", ".png": "image/png", ".woff2": "font/woff2", ".woff": "font/woff", ".ttf": "font/ttf" };
const server = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
  const prefix = path.startsWith("/dist/") ? "/dist/" : "/";
  const rel = normalize(path.slice(prefix.length) || "index.html");
  if (rel.startsWith("..")) { res.writeHead(403).end(); return; }
  try {
    const body = readFileSync(join(roots[prefix], rel));
    res.writeHead(200, { "content-type": types[extname(rel)] ?? "application/octet-stream" }).end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(Number(args["page-port"]), "127.0.0.1", resolve));

const userDataDir = mkdtempSync(join(tmpdir(), "xmppgw-chromium-"));
let context = null;
let bob = null;

async function scenario(name, fn) {
  const entry = { name, ok: false, skipped: false, ms: 0, error: null, detail: null };
  result.scenarios.push(entry);
  const start = performance.now();
  try {
    entry.detail = (await withTimeout(Promise.resolve().then(fn), 2 * step, name)) ?? null;
    entry.ok = true;
  } catch (err) {
    entry.error = err instanceof Error ? err.message : JSON.stringify(err);
    console.error(`[converse] ${name}:`, err);
  }
  entry.ms = elapsed(start);
  return entry.ok;
}

const deadline = setTimeout(() => { result.error = "cell deadline exceeded"; finish(result); }, 8 * step);
try {
  let page = null;
  const launched = await scenario("browser + page", async () => {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: args.chromium,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    page = context.pages()[0] ?? await context.newPage();
    page.on("console", (m) => console.error(`[page ${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
    return { version: context.browser()?.version() ?? null };
  });

  const jidA = `${args["user-a"]}@${args.domain}`;
  // A's roster holds B under the name "B" (set through Node before the page loads, so the
  // cell does not depend on the others).
  const seeded = launched && await scenario("roster seeded (xmpp.js as A)", async () => {
    const a = await XmppJsAdapter.login({
      url: args.url, domain: args.domain, user: args["user-a"], password: args["password-a"],
      resource: "seed", mechanism: "SCRAM-SHA-1", timeoutMs: step,
    });
    await a.rosterSet(`${args["user-b"]}@${args.domain}`);
    await a.logout();
  });
  const loggedIn = seeded && await scenario("login (SCRAM-SHA-1, Converse's default)", async () => {
    const q = new URLSearchParams({ ws: args.url, jid: `${jidA}/converse`, password: args["password-a"] });
    await page.goto(`http://127.0.0.1:${args["page-port"]}/index.html?${q}`);
    await page.waitForFunction(() => window.__events?.includes("connected"), null, { timeout: step });
  });

  if (loggedIn) {
    await scenario("roster shown", async () => {
      // A's roster holds B (added by the other cells with the name "B").
      await page.waitForFunction(
        (jid) => Array.from(document.querySelectorAll(".roster-contacts converse-roster-contact"))
          .some((e) => /\bB\b/.test(e.textContent ?? "") || (e.textContent ?? "").includes(jid)),
        `${args["user-b"]}@${args.domain}`, { timeout: step }).catch(async (e) => {
        console.error("[converse] page text:", (await page.evaluate(() => document.body.innerText)).slice(0, 3000));
        console.error("[converse] roster html:", (await page.evaluate(() => document.querySelector("converse-roster")?.outerHTML ?? "none")).slice(0, 3000));
        throw e;
      });
    });

    await scenario("message received and shown", async () => {
      bob = await XmppJsAdapter.login({
        url: args.url, domain: args.domain, user: args["user-b"], password: args["password-b"],
        resource: "to-converse", mechanism: "SCRAM-SHA-1", timeoutMs: step,
      });
      const body = `hello Converse ${Math.random().toString(36).slice(2, 8)}`;
      await bob.sendMessage({ to: `${jidA}/converse`, id: `cv-${Date.now()}`, body });
      // Converse counts it as unread in the roster; opening the chat shows the message.
      await page.waitForFunction(() => /New messages/.test(document.body.innerText), null, { timeout: step });
      await page.click(".roster-contacts converse-roster-contact a.open-chat");
      await page.waitForFunction(
        (text) => Array.from(document.querySelectorAll(".chat-msg__text, converse-chat-message-body")).some((e) => e.textContent.includes(text)),
        body, { timeout: step }).catch(async (e) => {
        console.error("[converse] page text:", (await page.evaluate(() => document.body.innerText)).slice(0, 3000));
        throw e;
      });
      return { body };
    });
  }
} finally {
  clearTimeout(deadline);
  await Promise.allSettled([context?.close(), bob?.logout()]);
  server.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
result.ok = result.scenarios.length > 0 && result.scenarios.every((s) => s.ok);
if (!result.ok) result.error = result.scenarios.filter((s) => !s.ok).map((s) => `${s.name}: ${s.error}`).join("; ");
finish(result);
