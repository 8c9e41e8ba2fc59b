// Wrong-password scenario with Strophe.js: the login must fail with a SASL
// <failure/>; reports the condition and how long the failure took.

import { StropheClient } from "./lib/strophe.mjs";
import { run, startScenario } from "./lib/common.mjs";

const { result, args } = startScenario("strophe.js", "wrong-password");
if (args) {
  result.login_ok = false;
  result.condition = null;
  await run(result, args.timeoutMs, async () => {
    const client = new StropheClient(args.url, args.mechanism);
    const start = performance.now();
    try {
      await client.login(`${args.user}@${args.domain}/wrong`, args.password, args.timeoutMs);
      result.login_ok = true;
    } catch (err) {
      result.condition = err.condition ?? null;
      result.detail = err.message;
    }
    result.elapsed_ms = Math.round((performance.now() - start) * 10) / 10;
    result.mechanism = client.conn._sasl_mechanism?.mechname ?? null;
    result.statuses = client.statuses;
    if (result.login_ok) throw new Error("login with a wrong password succeeded");
    if (result.condition === null) throw new Error(`login failed without a SASL condition: ${result.detail}`);
  });
}
