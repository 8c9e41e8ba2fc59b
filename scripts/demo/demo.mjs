// The Node side of scripts/demo.sh, with the clients of tests/e2e/js (its node_modules, from
// the committed lock file):
//
//   node demo.mjs serve --port N --url ws://… --domain D --account alice:PW --account bob:PW
//       serves the chat page (scripts/demo/index.html) and Converse.js's dist/ on 127.0.0.1:N,
//       with /demo.json telling the page the gateway's URL and the accounts; prints "ready".
//   node demo.mjs befriend --url … --domain D --account alice:PW --account bob:PW
//       xmpp.js logs both in through the gateway and makes them mutual contacts (roster items
//       named after each other, presence subscriptions both ways), so each sees the other online.
//   node demo.mjs check --page http://127.0.0.1:N/ --url … --domain D --account alice:PW
//       --account bob:PW --screenshot FILE
//       headless Chromium (Debian's, driven by puppeteer-core) opens the page as alice; bob
//       (xmpp.js) sends a message that the page must show, alice answers from the page and bob
//       must receive it; then a screenshot of the page. Prints one JSON line; exit 0 only if
//       every step held.

import { createServer } from "node:http";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize } from "node:path";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const clients = join(here, "../../tests/e2e/js");
const { XmppJsAdapter } = await import(join(clients, "lib/adapters.mjs"));
const { xml } = await import(join(clients, "lib/xmppjs.mjs"));

// tests/e2e/js/lib/common.mjs sends console.log to stderr (libraries log there); results are
// written to stdout directly.
function emit(line, exitCode) {
  process.stdout.write(`${line}\n`, () => (exitCode === undefined ? undefined : process.exit(exitCode)));
}

const [command, ...rest] = process.argv.slice(2);
const { values: args } = parseArgs({
  args: rest,
  options: {
    port: { type: "string" },
    url: { type: "string" },
    domain: { type: "string" },
    account: { type: "string", multiple: true },
    page: { type: "string" },
    screenshot: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    "timeout-ms": { type: "string", default: "20000" },
  },
  strict: true,
});
const step = Number(args["timeout-ms"]);
// "name:password" pairs, in the order given (the first is the page's default).
const accounts = Object.fromEntries((args.account ?? []).map((pair) => {
  const at = pair.indexOf(":");
  return [pair.slice(0, at), pair.slice(at + 1)];
}));
const [first, second] = Object.keys(accounts);

function login(user, resource) {
  return XmppJsAdapter.login({
    url: args.url, domain: args.domain, user, password: accounts[user], resource, mechanism: "SCRAM-SHA-1",
    timeoutMs: step,
  });
}

async function serve() {
  const roots = { "/dist/": join(clients, "node_modules/converse.js/dist/"), "/": here };
  const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".json": "application/json",
    ".wasm": "application/wasm", ".svg": "image/svg+xml", ".png": "image/png", ".woff2": "font/woff2",
    ".woff": "font/woff", ".ttf": "font/ttf", ".mp3": "audio/mpeg", ".ogg": "audio/ogg" };
  const settings = JSON.stringify({ websocket_url: args.url, domain: args.domain, accounts });
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    if (path === "/demo.json") {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" }).end(settings);
      return;
    }
    const prefix = path.startsWith("/dist/") ? "/dist/" : "/";
    const rel = normalize(path.slice(prefix.length) || "index.html");
    // Only the page itself from scripts/demo/, anything under Converse's dist/.
    if (rel.startsWith("..") || (prefix === "/" && rel !== "index.html")) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = readFileSync(join(roots[prefix], rel));
      res.writeHead(200, { "content-type": types[extname(rel)] ?? "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(args.port), "127.0.0.1", resolve);
  });
  emit(`ready http://127.0.0.1:${args.port}/`);
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

/** Both accounts become mutual contacts, each named after the other's user name. */
async function befriend() {
  const jidA = `${first}@${args.domain}`;
  const jidB = `${second}@${args.domain}`;
  const result = { ok: false, error: null, subscription: null };
  let a = null;
  let b = null;
  try {
    a = await login(first, "befriend");
    b = await login(second, "befriend");
    const available = (client, jid, what) =>
      client.nextPresence((p) => p.type === "available" && p.from.startsWith(`${jid}/`), step, what);
    // Subscription requests reach available resources only (offline storage is off): each
    // sends its initial presence and waits for the server's echo of it (RFC 6121 §4.2.2).
    for (const [client, jid] of [[a, jidA], [b, jidB]]) {
      const echoed = available(client, jid, `${jid}'s own presence`);
      await client.sendPresence();
      await echoed;
    }
    const name = (client, jid, nick) => client.iq(
      xml("iq", { type: "set" }, xml("query", { xmlns: "jabber:iq:roster" }, xml("item", { jid, name: nick }))));
    await name(a, jidB, second);
    await name(b, jidA, first);
    // RFC 6121 §3: each asks for the other's presence, each approves; then each receives the
    // other's presence.
    const asked = [
      b.nextPresence((p) => p.type === "subscribe" && p.from.startsWith(jidA), step, `subscribe from ${first}`),
      a.nextPresence((p) => p.type === "subscribe" && p.from.startsWith(jidB), step, `subscribe from ${second}`),
    ];
    await a.xmpp.send(xml("presence", { to: jidB, type: "subscribe" }));
    await b.xmpp.send(xml("presence", { to: jidA, type: "subscribe" }));
    await Promise.all(asked);
    const seen = [available(a, jidB, `${second}'s presence`), available(b, jidA, `${first}'s presence`)];
    await b.xmpp.send(xml("presence", { to: jidA, type: "subscribed" }));
    await a.xmpp.send(xml("presence", { to: jidB, type: "subscribed" }));
    await Promise.all(seen);
    const roster = await a.iq(xml("iq", { type: "get" }, xml("query", { xmlns: "jabber:iq:roster" })));
    const item = roster.getChild("query", "jabber:iq:roster")?.getChildren("item").find((i) => i.attrs.jid === jidB);
    result.subscription = item?.attrs.subscription ?? null;
    if (result.subscription !== "both") throw new Error(`${first}'s roster item for ${second}: ${JSON.stringify(item?.attrs)}`);
    result.ok = true;
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
  } finally {
    await Promise.allSettled([a?.logout(), b?.logout()]);
  }
  emit(JSON.stringify(result), result.ok ? 0 : 1);
}

async function check() {
  const require = createRequire(join(clients, "package.json"));
  const puppeteer = require("puppeteer-core");
  const result = { ok: false, error: null, steps: [], screenshot: null };
  const userDataDir = mkdtempSync(join(tmpdir(), "xmppgw-demo-chromium-"));
  let browser = null;
  let bob = null;
  const record = async (name, fn) => {
    const started = performance.now();
    const entry = { name, ok: false, ms: 0 };
    result.steps.push(entry);
    try {
      const detail = await fn();
      if (detail !== undefined) entry.detail = detail;
      entry.ok = true;
    } finally {
      entry.ms = Math.round(performance.now() - started);
    }
  };
  let page = null;
  try {
    await record("chromium starts", async () => {
      browser = await puppeteer.launch({
        browser: "chrome",
        executablePath: args.chromium,
        headless: true,
        userDataDir,
        defaultViewport: { width: 1280, height: 720 },
        args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      });
      page = (await browser.pages())[0] ?? await browser.newPage();
      page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
      return browser.version();
    });
    await record(`the page logs ${first} in through the gateway`, async () => {
      await page.goto(new URL(`?as=${first}`, args.page).href);
      await page.waitForFunction(() => window.__demo?.events.includes("connected"), { timeout: step });
      await page.waitForFunction(
        (name) => Array.from(document.querySelectorAll(".roster-contacts converse-roster-contact"))
          .some((e) => (e.textContent ?? "").includes(name)),
        { timeout: step }, second);
    });
    const body = `hello ${first}, this is ${second} through the gateway`;
    await record(`${second} (xmpp.js) sends, the page shows it`, async () => {
      bob = await login(second, "check");
      await bob.sendPresence();
      await bob.sendMessage({ to: `${first}@${args.domain}`, id: `demo-${Date.now()}`, body });
      await page.click(`.roster-contacts converse-roster-contact a.open-chat`);
      await page.waitForFunction(
        (text) => Array.from(document.querySelectorAll(".chat-msg__text, converse-chat-message-body"))
          .some((e) => e.textContent.includes(text)),
        { timeout: step }, body);
    });
    const reply = `hi ${second}, ${first} here, from the browser`;
    await record(`${first} answers from the page, ${second} receives it`, async () => {
      const received = bob.nextMessage((m) => m.body === reply, step, "the page's reply");
      await page.type("textarea.chat-textarea", reply);
      await page.focus("textarea.chat-textarea");
      await page.keyboard.press("Enter");
      const message = await received;
      await page.waitForFunction(
        (text) => Array.from(document.querySelectorAll(".chat-msg__text, converse-chat-message-body"))
          .filter((e) => e.textContent.includes(text)).length > 0,
        { timeout: step }, reply);
      return { from: message.from };
    });
    await record("screenshot", async () => {
      mkdirSync(dirname(args.screenshot), { recursive: true });
      await page.screenshot({ path: args.screenshot });
      result.screenshot = args.screenshot;
    });
    result.ok = true;
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
    if (page) {
      const text = await page.evaluate(() => document.body.innerText).catch(() => "");
      console.error(`[check] page text:\n${text.slice(0, 2000)}`);
      await page.screenshot({ path: args.screenshot }).then(() => { result.screenshot = args.screenshot; }, () => {});
    }
  } finally {
    await Promise.allSettled([browser?.close(), bob?.logout()]);
    rmSync(userDataDir, { recursive: true, force: true });
  }
  emit(JSON.stringify(result), result.ok ? 0 : 1);
}

const commands = { serve, befriend, check };
if (!commands[command]) {
  console.error(`usage: demo.mjs serve|befriend|check [options] (see the top of ${fileURLToPath(import.meta.url)})`);
  process.exit(2);
}
await commands[command]();
