#!/usr/bin/env bash
# Demo: the gateway run with the shipped config/gateway.toml, unchanged, in
# front of a throw-away Prosody: the shipped config's sidecar upstream is the
# domain "localhost" on 127.0.0.1:5222 with STARTTLS, so the demo starts
# Prosody exactly there (accounts alice and bob, a certificate from a CA made
# now, which the gateway trusts through SSL_CERT_FILE). One xmpp.js login +
# chat goes through the gateway, then both stay up with the URL and
# credentials printed. Ctrl-C stops both and removes the temporary directory.
# Ports used: 5222 (Prosody), 5290 (gateway), 9290 (gateway admin).
#
# Needs: prosody (Debian package), openssl, node >= 20.10, npm, cargo.
# Uses the same Prosody config template as the Rust fixture:
# tests/e2e/fixtures/prosody.cfg.lua.in.
#
# Environment: DEMO_KEEP=1 keeps the temporary directory after exit;
#              GATEWAY_BIN=path uses that gateway binary instead of building one.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
domain="localhost"
c2s_port=5222

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
for tool in prosody prosodyctl openssl node npm cargo; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/test.sh installs the Debian packages)"
done

dir="$(mktemp -d /tmp/xmppgw-demo.XXXXXX)"
prosody_pid=""
gateway_pid=""
cleanup() {
  trap - EXIT INT TERM
  if [[ -n "$gateway_pid" ]]; then kill "$gateway_pid" 2>/dev/null || true; wait "$gateway_pid" 2>/dev/null || true; fi
  if [[ -n "$prosody_pid" ]]; then kill "$prosody_pid" 2>/dev/null || true; wait "$prosody_pid" 2>/dev/null || true; fi
  if [[ "${DEMO_KEEP:-0}" == 1 ]]; then echo "kept $dir"; else rm -rf "$dir"; fi
  echo "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# wait_for DESCRIPTION SECONDS COMMAND...: poll COMMAND every 0.1 s until it
# succeeds, at most SECONDS.
wait_for() {
  local what="$1" seconds="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" 2>/dev/null; do
    ((SECONDS < deadline)) || die "timed out after ${seconds}s waiting for $what"
    sleep 0.1
  done
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for port in 5222 5290 9290; do
  if port_open "$port"; then die "port $port on 127.0.0.1 is in use; the demo needs 5222, 5290 and 9290"; fi
done

echo "==> test CA and certificate for $domain (in $dir)"
mkdir -p "$dir/data" "$dir/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
  -subj "/CN=xmpp-ws-gateway demo CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=$domain" -keyout "$dir/$domain.key" -out "$dir/$domain.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$domain" >"$dir/leaf.ext"
openssl x509 -req -in "$dir/$domain.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 7 -extfile "$dir/leaf.ext" -out "$dir/$domain.crt" 2>/dev/null

echo "==> Prosody config from tests/e2e/fixtures/prosody.cfg.lua.in"
sed -e "s|@DIR@|$dir|g" -e "s|@C2S_PORT@|$c2s_port|g" -e "s|@HTTP_PORT@||g" \
  -e "s|@WEBSOCKET@|ping|g" -e "s|@DOMAIN@|$domain|g" \
  -e "s|@CERT@|$dir/$domain.crt|g" -e "s|@KEY@|$dir/$domain.key|g" \
  tests/e2e/fixtures/prosody.cfg.lua.in >"$dir/prosody.cfg.lua"
if grep -v '^ *--' "$dir/prosody.cfg.lua" | grep -qE '@[A-Z_]+@'; then
  die "unfilled placeholder in $dir/prosody.cfg.lua"
fi

alice_pw="$(openssl rand -hex 8)"
bob_pw="$(openssl rand -hex 8)"
timeout 30 prosodyctl --config "$dir/prosody.cfg.lua" register alice "$domain" "$alice_pw"
timeout 30 prosodyctl --config "$dir/prosody.cfg.lua" register bob "$domain" "$bob_pw"

echo "==> starting Prosody on 127.0.0.1:$c2s_port (log: $dir/prosody.log)"
prosody --config "$dir/prosody.cfg.lua" -F >"$dir/prosody.console" 2>&1 &
prosody_pid=$!
wait_for "Prosody on port $c2s_port" 20 port_open "$c2s_port"

if [[ -n "${GATEWAY_BIN:-}" ]]; then
  gateway_bin="$GATEWAY_BIN"
else
  echo "==> building the gateway (release)"
  cargo build --release --locked --bin xmpp-ws-gateway
  target_dir="$(cargo metadata --format-version 1 --no-deps \
    | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
  gateway_bin="$target_dir/release/xmpp-ws-gateway"
fi


echo "==> starting the gateway with config/gateway.toml (log: $dir/gateway.log)"
SSL_CERT_FILE="$dir/ca.pem" "$gateway_bin" --config config/gateway.toml 2>"$dir/gateway.log" &
gateway_pid=$!
gateway_ready() {
  kill -0 "$gateway_pid" || die "the gateway exited; see $dir/gateway.log: $(tail -5 "$dir/gateway.log")"
  grep -q 'url=ws://' "$dir/gateway.log"
}
wait_for "the gateway to log its url" 20 gateway_ready
url="$(grep -o 'url="\?ws://[^ ",]*' "$dir/gateway.log" | head -1 | sed 's/^url="\?//')"

echo "==> xmpp.js: alice and bob log in through the gateway and chat"
[[ -d tests/e2e/js/node_modules ]] || (cd tests/e2e/js && npm ci --no-audit --no-fund --loglevel=error)
node tests/e2e/js/xmppjs-chat.mjs --url "$url" --domain "$domain" \
  --user-a alice --password-a "$alice_pw" --user-b bob --password-b "$bob_pw" \
  --body "hello from scripts/demo.sh" --timeout-ms 20000 2>"$dir/client.log" | tail -1 \
  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s);
      console.log(`    ok=${r.ok} login=${r.a?.mechanism} in ${r.a?.ms} ms, roster result=${r.roster?.result_received},`
        + ` body=${JSON.stringify(r.message?.body_received)}, receipt=${r.receipt?.received}, clean close=${r.disconnect?.clean}`
        + (r.error ? `, error: ${r.error}` : ""));
      process.exit(r.ok ? 0 : 1)})' \
  || echo "    the scenario failed; client log: $dir/client.log (servers stay up for a look)"

cat <<INFO

The gateway is running.
  WebSocket URL:  $url   (subprotocol "xmpp")
  Domain:         $domain
  Accounts:       alice@$domain  password $alice_pw
                  bob@$domain    password $bob_pw
  Metrics:        http://127.0.0.1:9290/metrics   (also /healthz, /readyz)
  Logs:           $dir/gateway.log  $dir/prosody.log
Press Ctrl-C to stop both.
INFO
wait -n "$gateway_pid" "$prosody_pid" || true
echo "a server exited on its own; see $dir/gateway.log and $dir/prosody.log" >&2
exit 1
