// The Converse.js cells of the interop matrix: Converse in a headless browser, Debian's
// Chromium (DevTools protocol) or Firefox ESR (WebDriver BiDi), both driven by puppeteer-core,
// which never downloads a browser of its own. One browser serves every target (server x path)
// in turn, each in its own browser context. For each target, the page, served here on
// loopback, logs in as A through the target's WebSocket URL; B is xmpp.js in this process,
// through the same URL. Checks what the page shows and what B sees:
//   login (SCRAM, Converse's default), roster shown, a chat message from B shown, MUC (B's
//   groupchat shown, one typed into Converse's room reaches B), reconnect after the WebSocket is
//   dropped under Converse (a message from B shown afterwards), logout, login with PLAIN only,
//   and a wrong password refused (not-authorized) with Converse's feedback.
// A target with "http2": true is the gateway's own wss:// listener offering HTTP/2: the cell
// then also checks that every WebSocket Converse opened ran over HTTP/2 (RFC 8441): the gateway's
// xmppgw_websocket_upgrades_total{http_version="2"} (at "metrics") grew by exactly the number
// of WebSockets the pages opened, and in Chromium the DevTools protocol reported each handshake
// answered 200 (an HTTP/2 extended CONNECT) rather than 101 (an HTTP/1.1 Upgrade), and the
// protocol "h2" for each page's connection to the gateway. Chromium
// sends a WebSocket over HTTP/2 only on an HTTP/2 connection it already holds to the gateway's
// origin, so its page first fetches the gateway's host-meta (with credentials, the connection
// pool WebSockets use); Firefox opens one for the WebSocket itself.
//
// The browsers trust --ca-file (the wss:// listener's CA) through an NSS database made with
// certutil: in Chromium's $HOME/.pki/nssdb, and in Firefox's profile.
//
//   node converse-cell.mjs --browser chromium|firefox --domain e2e.test --page-port N
//     [--ca-file ca.pem] --targets '[{"name":"prosody/direct","url":"ws://…","userA":…,
//     "passwordA":…,"userB":…,"passwordB":…,"room":"room@conference.e2e.test",
//     "http2":false,"metrics":"http://…/metrics","bosh":"http://…/http-bind"}, …]'
//     [--executable /usr/bin/…]
//
// A target with "bosh" runs Converse over BOSH at that URL; B (xmpp.js, which has no BOSH)
// still logs in over the WebSocket at "url".
//
// Prints one JSON line: { ok, browser, browser_version, library_version, error,
//   cells: [{ target, ok, error, ms, scenarios: [{ name, ok, skipped, ms, error, detail }] }] }.

import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import { parseArgs } from "node:util";
import puppeteer from "puppeteer-core";
import { XmppJsAdapter } from "./lib/adapters.mjs";
import { elapsed, finish, packageVersion, withTimeout } from "./lib/common.mjs";

const { values: args } = parseArgs({
  options: {
    browser: { type: "string", default: "chromium" },
    executable: { type: "string" },
    domain: { type: "string" },
    targets: { type: "string" },
    "page-port": { type: "string" },
    "ca-file": { type: "string" },
    "timeout-ms": { type: "string", default: "20000" },
  },
  strict: true,
});
const step = Number(args["timeout-ms"]);
const result = {
  ok: false, error: null, client: "converse", library: "converse.js",
  library_version: packageVersion("converse.js"), browser: args.browser, browser_version: null,
  browser_launch_ms: null, cells: [],
};
const targets = JSON.parse(args.targets ?? "[]");

// Firefox's background network, all off: the machine reaches only loopback, and a test must not
// depend on (or wait for) anything else. Whatever is left goes to a proxy on a closed loopback
// port (loopback itself is never proxied), so no name is even looked up.
const FIREFOX_PREFS = {
  "app.normandy.enabled": false,
  "app.shield.optoutstudies.enabled": false,
  "app.update.auto": false,
  "app.update.disabledForTesting": true,
  "app.update.enabled": false,
  "browser.newtabpage.enabled": false,
  "browser.ping-centre.telemetry": false,
  "browser.region.network.url": "",
  "browser.region.update.enabled": false,
  "browser.safebrowsing.blockedURIs.enabled": false,
  "browser.safebrowsing.downloads.enabled": false,
  "browser.safebrowsing.downloads.remote.enabled": false,
  "browser.safebrowsing.malware.enabled": false,
  "browser.safebrowsing.phishing.enabled": false,
  "browser.safebrowsing.update.enabled": false,
  "browser.search.update": false,
  "browser.startup.homepage": "about:blank",
  "browser.startup.page": 0,
  "datareporting.healthreport.uploadEnabled": false,
  "datareporting.policy.dataSubmissionEnabled": false,
  "extensions.blocklist.enabled": false,
  "extensions.getAddons.cache.enabled": false,
  "extensions.update.enabled": false,
  "geo.provider.network.url": "",
  "media.gmp-manager.url": "",
  "browser.shell.checkDefaultBrowser": false,
  "messaging-system.rsexperimentloader.enabled": false,
  "nimbus.rsexperimentloader.enabled": false,
  "network.captive-portal-service.enabled": false,
  "network.connectivity-service.enabled": false,
  "network.dns.disablePrefetch": true,
  "network.http.speculative-parallel-limit": 0,
  "network.prefetch-next": false,
  "network.proxy.http": "127.0.0.1",
  "network.proxy.http_port": 9,
  "network.proxy.share_proxy_settings": true,
  "network.proxy.ssl": "127.0.0.1",
  "network.proxy.ssl_port": 9,
  "network.proxy.type": 1,
  "network.trr.mode": 5,
  "services.settings.server": "http://127.0.0.1:9/remote-settings",
  "toolkit.telemetry.archive.enabled": false,
  "toolkit.telemetry.enabled": false,
  "toolkit.telemetry.server": "",
  "toolkit.telemetry.unified": false,
};

// The browser's files: Chromium's $HOME (for its NSS database) or Firefox's profile.
const browserDir = mkdtempSync(join(tmpdir(), `converse-${args.browser}-`));
process.on("exit", () => rmSync(browserDir, { recursive: true, force: true }));

/** An NSS database in `dir` that trusts --ca-file for TLS servers, if given. */
function trustCa(dir) {
  if (!args["ca-file"]) return;
  mkdirSync(dir, { recursive: true });
  execFileSync("certutil", ["-d", `sql:${dir}`, "-N", "--empty-password"]);
  execFileSync("certutil", ["-d", `sql:${dir}`, "-A", "-t", "C,,", "-n", "xmpp-ws-gateway test CA", "-i", args["ca-file"]]);
}

const LAUNCH = {
  chromium: () => {
    trustCa(join(browserDir, ".pki/nssdb"));
    return {
      browser: "chrome",
      executablePath: args.executable ?? "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"],
      env: { ...process.env, HOME: browserDir },
    };
  },
  firefox: () => {
    trustCa(browserDir);
    return {
      browser: "firefox",
      protocol: "webDriverBiDi",
      executablePath: args.executable ?? "/usr/bin/firefox-esr",
      headless: true,
      userDataDir: browserDir,
      extraPrefsFirefox: FIREFOX_PREFS,
      // Lets services.settings.server above take effect in a release build.
      env: { ...process.env, MOZ_REMOTE_SETTINGS_DEVTOOLS: "1" },
    };
  },
};

/** The gateway's HTTP/2 WebSocket upgrades so far (its /metrics at `url`). */
async function http2Upgrades(url) {
  const text = await (await fetch(url)).text();
  const line = text.split("\n").find((l) => l.startsWith('xmppgw_websocket_upgrades_total{http_version="2"}'));
  return line ? Number(line.split(" ").pop()) : 0;
}
/** The BOSH requests the gateway has answered so far, summed over its labels (its /metrics at
 * `url`). */
async function boshRequests(url) {
  const text = await (await fetch(url)).text();
  return text.split("\n").filter((l) => /^xmppgw_bosh_requests_total[{ ]/.test(l))
    .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
}
if (!LAUNCH[args.browser]) {
  result.error = `usage: unknown --browser ${args.browser}`;
  finish(result);
}

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

let browser = null;

/** Runs every scenario for one target in its own browser context; returns the cell. */
async function runCell(target) {
  const cell = { target: target.name, ok: false, error: null, ms: 0, scenarios: [] };
  const started = performance.now();
  const context = await browser.createBrowserContext();
  const bobs = [];
  // Converse's pages, and (Chromium) the status of each WebSocket handshake DevTools reported.
  const pages = [];
  const handshakes = [];
  const primed = [];
  const upgradesBefore = target.http2 ? await http2Upgrades(target.metrics) : 0;
  const boshBefore = target.bosh ? await boshRequests(target.metrics) : 0;
  const jidA = `${target.userA}@${args.domain}`;
  const jidB = `${target.userB}@${args.domain}`;
  const tag = Math.random().toString(36).slice(2, 8);

  async function scenario(name, fn) {
    const entry = { name, ok: false, skipped: false, ms: 0, error: null, detail: null };
    cell.scenarios.push(entry);
    const start = performance.now();
    try {
      entry.detail = (await withTimeout(Promise.resolve().then(fn), 2 * step, name)) ?? null;
      entry.ok = true;
    } catch (err) {
      entry.error = err instanceof Error ? err.message : JSON.stringify(err);
      console.error(`[converse/${args.browser} ${target.name}] ${name}:`, err);
    }
    entry.ms = elapsed(start);
    return entry.ok;
  }

  /** B (xmpp.js) logged in through the same URL; logged out at the end. */
  async function loginB(resource) {
    const b = await XmppJsAdapter.login({
      url: target.url, domain: args.domain, user: target.userB, password: target.passwordB,
      resource, mechanism: "SCRAM-SHA-1", timeoutMs: step,
    });
    bobs.push(b);
    return b;
  }

  /** Converse's page in a new tab of the cell's context (a tab has its own sessionStorage,
   * where Converse keeps its session, so every login starts afresh). */
  async function openConverse({ password = target.passwordA, mechanism = null, resource = "converse" } = {}) {
    const page = await context.newPage();
    pages.push(page);
    page.on("console", (m) => console.error(`[page ${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
    const q = new URLSearchParams({ ws: target.url, jid: `${jidA}/${resource}`, password });
    if (target.bosh) q.set("bosh", target.bosh);
    if (mechanism) q.set("mechanism", mechanism);
    if (target.http2 && args.browser === "chromium") {
      const devtools = await page.createCDPSession();
      await devtools.send("Network.enable");
      const prime = new URL("/.well-known/host-meta", target.url.replace(/^wss:/, "https:")).href;
      devtools.on("Network.webSocketHandshakeResponseReceived", (e) => handshakes.push(e.response.status));
      // The protocol DevTools reports for the connection the WebSockets then share.
      devtools.on("Network.responseReceived", (e) => {
        if (e.response.url === prime) primed.push(e.response.protocol);
      });
      q.set("prime", prime);
    }
    await page.goto(`http://127.0.0.1:${args["page-port"]}/index.html?${q}`);
    return page;
  }

  /** Waits until Converse has recorded `event` `count` times. */
  function waitEvent(page, event, count = 1) {
    return page.waitForFunction((e, n) => (window.__events ?? []).filter((x) => x === e).length >= n,
      { timeout: step }, event, count);
  }

  /** Waits until a message with `text` is shown on the page. */
  async function waitShown(page, text) {
    await page.waitForFunction(
      (t) => Array.from(document.querySelectorAll(".chat-msg__text, converse-chat-message-body"))
        .some((e) => e.textContent.includes(t)),
      { timeout: step }, text).catch(async (e) => {
      console.error("[converse] page text:", (await page.evaluate(() => document.body.innerText)).slice(0, 3000));
      throw e;
    });
  }

  try {
    // A's roster holds B under the name "B" (set through Node before the page loads, so the
    // cell does not depend on the others).
    const seeded = await scenario("roster seeded (xmpp.js as A)", async () => {
      const a = await XmppJsAdapter.login({
        url: target.url, domain: args.domain, user: target.userA, password: target.passwordA,
        resource: "seed", mechanism: "SCRAM-SHA-1", timeoutMs: step,
      });
      await a.rosterSet(jidB);
      await a.logout();
    });

    let page = null;
    const loggedIn = seeded && await scenario("login (SCRAM, Converse's default)", async () => {
      page = await openConverse();
      await waitEvent(page, "connected");
      const mechanism = await page.evaluate(() => window.__mechanism);
      if (!/^SCRAM-/.test(mechanism ?? "")) throw new Error(`mechanism ${mechanism}`);
      return { mechanism };
    });

    if (loggedIn) {
      await scenario("roster shown", async () => {
        await page.waitForFunction(
          (jid) => Array.from(document.querySelectorAll(".roster-contacts converse-roster-contact"))
            .some((e) => /\bB\b/.test(e.textContent ?? "") || (e.textContent ?? "").includes(jid)),
          { timeout: step }, jidB).catch(async (e) => {
          console.error("[converse] page text:", (await page.evaluate(() => document.body.innerText)).slice(0, 3000));
          throw e;
        });
      });

      const bob = await loginB("to-converse").catch((err) => {
        console.error("[converse] B's login:", err);
        return null;
      });

      await scenario("message received and shown", async () => {
        if (!bob) throw new Error("B could not log in");
        const body = `hello Converse ${tag}`;
        await bob.sendMessage({ to: `${jidA}/converse`, id: `cv-${tag}`, body });
        // Converse counts it as unread in the roster; opening the chat shows the message.
        await page.waitForFunction(() => /New messages/.test(document.body.innerText), { timeout: step });
        await page.click(".roster-contacts converse-roster-contact a.open-chat");
        await waitShown(page, body);
        return { body };
      });

      await scenario("MUC join + groupchat", async () => {
        if (!bob) throw new Error("B could not log in");
        const [name, service] = target.room.split("@");
        const room = `${name}-converse-${args.browser}-${tag}@${service}`;
        await bob.joinRoom(room, "nick-b");
        const joined = bob.nextPresence((p) => p.from === `${room}/nick-a` && p.type === "available", step, "Converse in the room");
        await page.evaluate((jid) => window.__converse.api.rooms.open(jid, { nick: "nick-a" }, true), room);
        await joined;
        const toConverse = `to the room from B ${tag}`;
        await bob.sendMessage({ to: room, id: `g-b-${tag}`, body: toConverse, type: "groupchat" });
        await waitShown(page, toConverse);
        // Typed into the room's message box, sent with Enter, as a person would.
        const fromConverse = `to the room from Converse ${tag}`;
        const atB = bob.nextMessage((m) => m.type === "groupchat" && m.body === fromConverse, step, "Converse's groupchat at B");
        const box = "converse-muc textarea.chat-textarea";
        await page.waitForSelector(box, { timeout: step });
        await page.type(box, fromConverse);
        await page.keyboard.press("Enter");
        const m = await atB;
        if (m.from !== `${room}/nick-a`) throw new Error(`groupchat from ${m.from}`);
        return { room };
      });

      if (target.bosh) {
        // Over BOSH there is no socket to drop under Converse: its requests are separate HTTP
        // exchanges. What a lost BOSH client does to the upstream is tests/bosh.rs's.
        cell.scenarios.push({ name: "reconnect after the WebSocket drops", ok: true, skipped: true, ms: 0,
          error: null, detail: "no WebSocket over BOSH" });
      } else await scenario("reconnect after the WebSocket drops", async () => {
        if (!bob) throw new Error("B could not log in");
        // The socket closes under Converse without <close/>: Converse must notice and come back
        // by itself (resuming with XEP-0198 where the server offers it).
        await page.evaluate(() => window.__converse.api.connection.get()._proto.socket.close());
        await waitEvent(page, "reconnected");
        const resumed = await page.evaluate(() => Boolean(window.__converse.session?.get("smacks_resumed")));
        const body = `after the reconnect ${tag}`;
        await bob.sendMessage({ to: `${jidA}/converse`, id: `cv-r-${tag}`, body });
        await page.evaluate((jid) => window.__converse.api.chats.open(jid, {}, true), jidB);
        await waitShown(page, body);
        return { resumed };
      });

      await scenario("logout", async () => {
        await page.evaluate(() => { window.__converse.api.user.logout(); });
        await waitEvent(page, "disconnected");
      });
    }

    if (seeded) {
      await scenario("login PLAIN", async () => {
        const plain = await openConverse({ mechanism: "PLAIN", resource: "plain" });
        await waitEvent(plain, "connected");
        const mechanism = await plain.evaluate(() => window.__mechanism);
        if (mechanism !== "PLAIN") throw new Error(`mechanism ${mechanism}`);
        await plain.evaluate(() => { window.__converse.api.user.logout(); });
        await waitEvent(plain, "disconnected");
        return { mechanism };
      });

      await scenario("wrong password", async () => {
        const wrong = await openConverse({ password: `${target.passwordA}-wrong`, resource: "wrong" });
        const start = performance.now();
        // Strophe's AUTHFAIL status, then Converse's feedback in its login form.
        await wrong.waitForFunction(
          () => (window.__statuses ?? []).includes(converse.env.Strophe.Status.AUTHFAIL), { timeout: step });
        const { condition, feedback } = await wrong.evaluate(() => ({
          condition: window.__saslFailure ?? null,
          feedback: window.__converse.state.connfeedback.get("message"),
        }));
        if (condition !== "not-authorized") throw new Error(`condition ${condition}`);
        await wrong.waitForFunction((text) => document.body.innerText.includes(text), { timeout: step }, feedback);
        const connected = await wrong.evaluate(() => window.__events.includes("connected"));
        if (connected) throw new Error("connected with a wrong password");
        const ms = elapsed(start);
        if (ms > 5000) throw new Error(`refusal took ${ms} ms`);
        return { condition, feedback };
      });
    }

    if (target.bosh) {
      await scenario("over BOSH only", async () => {
        let sockets = 0;
        for (const page of pages) sockets += await page.evaluate(() => window.__sockets ?? 0);
        if (sockets !== 0) throw new Error(`Converse opened ${sockets} WebSockets instead of using BOSH`);
        const requests = (await boshRequests(target.metrics)) - boshBefore;
        if (requests <= 0) throw new Error("the gateway counted no BOSH request");
        return `${requests} BOSH requests at the gateway, no WebSocket`;
      });
    }

    if (target.http2) {
      await scenario("WebSockets over HTTP/2 (RFC 8441)", async () => {
        let sockets = 0;
        for (const page of pages) sockets += await page.evaluate(() => window.__sockets ?? 0);
        const upgrades = (await http2Upgrades(target.metrics)) - upgradesBefore;
        if (sockets === 0) throw new Error("Converse opened no WebSocket");
        if (upgrades !== sockets) {
          throw new Error(`Converse opened ${sockets} WebSockets; the gateway upgraded ${upgrades} over HTTP/2`);
        }
        if (args.browser === "chromium" && (handshakes.length !== sockets || handshakes.some((s) => s !== 200))) {
          throw new Error(`DevTools handshake statuses ${JSON.stringify(handshakes)} (200: HTTP/2, 101: HTTP/1.1)`);
        }
        if (args.browser === "chromium" && (primed.length !== pages.length || primed.some((p) => p !== "h2"))) {
          throw new Error(`DevTools protocols of the pages' connections to the gateway: ${JSON.stringify(primed)}`);
        }
        return args.browser === "chromium"
          ? `${sockets} WebSockets, ${upgrades} HTTP/2 upgrades at the gateway, DevTools: connection protocol ${[...new Set(primed)].join(",")}, handshake statuses ${handshakes.join(",")}`
          : `${sockets} WebSockets, ${upgrades} HTTP/2 upgrades at the gateway`;
      });
    }
  } finally {
    await Promise.allSettled([context.close(), ...bobs.map((b) => b.logout())]);
  }
  cell.ms = elapsed(started);
  cell.ok = cell.scenarios.length > 0 && cell.scenarios.every((s) => s.ok);
  if (!cell.ok) cell.error = cell.scenarios.filter((s) => !s.ok).map((s) => `${s.name}: ${s.error}`).join("; ");
  return cell;
}

// Every target in turn, each under its own deadline; the whole run under one as well.
const deadline = setTimeout(() => { result.error = "deadline exceeded"; finish(result); }, (targets.length + 1) * 12 * step);
try {
  const start = performance.now();
  browser = await puppeteer.launch(LAUNCH[args.browser]());
  result.browser_version = await browser.version();
  result.browser_launch_ms = elapsed(start);
  for (const target of targets) {
    const cell = await withTimeout(runCell(target), 10 * step, `cell ${target.name}`).catch((err) => ({
      target: target.name, ok: false, error: err instanceof Error ? err.message : String(err), ms: 0, scenarios: [],
    }));
    result.cells.push(cell);
  }
} catch (err) {
  result.error = `${args.browser}: ${err instanceof Error ? err.message : String(err)}`;
  console.error(`[converse/${args.browser}]`, err);
} finally {
  clearTimeout(deadline);
  await browser?.close().catch(() => {});
  server.close();
}
result.ok = !result.error && result.cells.length === targets.length && result.cells.every((c) => c.ok);
finish(result);
