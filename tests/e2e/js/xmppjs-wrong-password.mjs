// Wrong-password scenario with xmpp.js: the login must fail with a SASL
// <failure/>; reports the condition and how long the failure took.

import { XmppJsClient } from "./lib/xmppjs.mjs";
import { run, startScenario } from "./lib/common.mjs";

const { result, args } = startScenario("@xmpp/client", "wrong-password");
if (args) {
  result.login_ok = false;
  result.condition = null;
  await run(result, args.timeoutMs, async () => {
    const c = new XmppJsClient({
      url: args.url, domain: args.domain, mechanism: args.mechanism,
      username: args.user, password: args.password, resource: "wrong",
    });
    const start = performance.now();
    try {
      await c.login(args.timeoutMs);
      result.login_ok = true;
    } catch (err) {
      // SASLError (an XMPPError) carries the RFC 6120 6.5 condition.
      result.condition = err.name === "SASLError" ? err.condition : null;
      result.detail = `${err.name}: ${err.message}`;
    }
    result.elapsed_ms = Math.round((performance.now() - start) * 10) / 10;
    result.mechanism = c.mechanism;
    result.statuses = c.statuses;
    // Leave no socket behind; a failed login may already have closed it.
    await c.xmpp.stop().catch(() => {});
    if (result.login_ok) throw new Error("login with a wrong password succeeded");
    if (result.condition === null) throw new Error(`login failed without a SASL condition: ${result.detail}`);
  });
}
