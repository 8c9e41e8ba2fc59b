#!/usr/bin/env bash
# Demo: the gateway run with the shipped config/gateway.toml in front of a throw-away Prosody,
# and a chat page in your browser that talks to it.
#
# The shipped config's sidecar upstream is the domain "localhost" on 127.0.0.1:5222 with
# STARTTLS, so the demo starts Prosody exactly there (accounts alice and bob, a certificate from
# a CA made now, which the gateway trusts through SSL_CERT_FILE). The only setting given from
# the environment is the chat page's origin (XMPPGW_LISTENER__ALLOWED_ORIGINS): the shipped file
# lets no web page in. xmpp.js logs alice and bob in through the gateway, they chat and become
# mutual contacts; then the chat page (Converse.js) is served on http://127.0.0.1:8290/, logged
# in as alice (?as=bob for bob), and everything stays up until Ctrl-C.
#
# Usage: scripts/demo.sh [--check] [--image IMAGE]
#   --check        non-interactive (CI): after the chat, headless Chromium opens the page as
#                  alice, bob (xmpp.js) sends her a message that the page must show, alice
#                  answers from the page and bob must receive it; a screenshot is saved and its
#                  path printed; /healthz, /readyz and /metrics are checked; SIGTERM must stop
#                  the gateway with exit 0. Exits 0 only if all of that held.
#   --image IMAGE  run the gateway from the container image IMAGE (podman, host network; see
#                  scripts/image-check.sh) instead of a binary. With --check it also checks that
#                  the process runs as the image's user (uid 10001) and that /metrics comes from
#                  inside the container (its open-files limit is the container's).
#
# On a fresh Debian 12 machine it installs what is missing (as root: Prosody, and Chromium for
# --check, podman for --image; the npm clients from tests/e2e/js's lock file); Rust and
# Node >= 20.10 must be there. Ports used: 5222 (Prosody), 5290 (gateway), 9290 (gateway admin),
# 8290 (chat page), all on 127.0.0.1.
#
# Environment: GATEWAY_BIN=path  use that gateway binary instead of building one (release);
#              DEMO_SCREENSHOT=path  where --check saves the screenshot
#                                    (default: target/demo/chat.png);
#              DEMO_KEEP=1  keep the temporary directory (logs, Prosody data) after exit;
#              SKIP_APT=1   never install Debian packages.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck source=scripts/lib/setup.sh
source "$repo/scripts/lib/setup.sh"
die() { setup_die "$@"; }

check=0
image=""
while (($# > 0)); do
  case "$1" in
    --check) check=1 ;;
    --image) image="${2:?--image needs an image name}"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see scripts/demo.sh --help)" ;;
  esac
  shift
done
[[ -z "$image" || -z "${GATEWAY_BIN:-}" ]] || die "--image and GATEWAY_BIN exclude each other"

domain="localhost"
c2s_port=5222
ws_port=5290
admin_port=9290
page_port=8290
page_origins="http://127.0.0.1:$page_port,http://localhost:$page_port"
screenshot="${DEMO_SCREENSHOT:-$repo/target/demo/chat.png}"
started=$SECONDS

# --- What the demo needs --------------------------------------------------------
require_node
[[ -n "$image" || -n "${GATEWAY_BIN:-}" ]] || require_cargo
needed=("${PROSODY_PACKAGES[@]}")
((check)) && needed+=("${BROWSER_PACKAGES[@]}")
[[ -z "$image" ]] || needed+=("${IMAGE_PACKAGES[@]}")
install_debian_packages "${needed[@]}"
npm_clients "$repo"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$c2s_port" "$ws_port" "$admin_port" "$page_port"; do
  if port_open "$port"; then
    die "port $port on 127.0.0.1 is in use; the demo needs $c2s_port, $ws_port, $admin_port and $page_port"
  fi
done

dir="$(mktemp -d /tmp/xmppgw-demo.XXXXXX)"
prosody_pid=""
gateway_pid=""
page_pid=""
container=""
cleanup() {
  trap - EXIT INT TERM
  local pid
  for pid in "$page_pid" "$gateway_pid" "$prosody_pid"; do
    if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  done
  if [[ -n "$container" ]]; then podman rm -f --ignore "$container" >/dev/null 2>&1 || true; fi
  if [[ "${DEMO_KEEP:-0}" == 1 ]]; then echo "kept $dir"; else rm -rf "$dir"; fi
  echo "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for DESCRIPTION SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds, at most
# SECONDS.
wait_for() {
  local what="$1" seconds="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" 2>/dev/null; do
    ((SECONDS < deadline)) || die "timed out after ${seconds}s waiting for $what"
    sleep 0.1
  done
}
# http_get URL: the body on stdout; fails on a non-2xx status or no answer.
http_get() {
  node -e 'fetch(process.argv[1]).then(async (r) => { process.stdout.write(await r.text()); process.exit(r.ok ? 0 : 1) },
    (e) => { console.error(String(e)); process.exit(1) })' "$1"
}
# json_field FIELD: reads one JSON line on stdin, prints FIELD (dotted path).
json_field() {
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let v=JSON.parse(s.trim().split("\n").pop());
    for (const k of process.argv[1].split(".")) v=v?.[k]; console.log(typeof v==="object"?JSON.stringify(v):v)})' "$1"
}

# --- Prosody ----------------------------------------------------------------------
echo "==> test CA and certificate for $domain (in $dir)"
mkdir -p "$dir/data" "$dir/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
  -subj "/CN=xmpp-ws-gateway demo CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=$domain" -keyout "$dir/$domain.key" -out "$dir/$domain.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$domain" >"$dir/leaf.ext"
openssl x509 -req -in "$dir/$domain.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
  -days 7 -extfile "$dir/leaf.ext" -out "$dir/$domain.crt" 2>/dev/null
chmod 644 "$dir/ca.pem"

echo "==> Prosody config from tests/e2e/fixtures/prosody.cfg.lua.in"
# Every placeholder the template lists at its top; the check below catches a new one. No
# mod_websocket (the gateway is the WebSocket side) and no mod_smacks, as in the e2e tests'
# default: xmpp.js 0.14 turns stream management on whenever offered and its close then races
# with the acks (tests/harness/e2e.rs, ProsodyOptions).
declare -A fill=(
  [DIR]="$dir" [C2S_PORT]="$c2s_port" [HTTP_PORT]="" [WEBSOCKET]="ping" [SMACKS]="ping"
  [DOMAIN]="$domain" [CERT]="$dir/$domain.crt" [KEY]="$dir/$domain.key"
)
sed_args=()
for name in "${!fill[@]}"; do sed_args+=(-e "s|@$name@|${fill[$name]}|g"); done
sed "${sed_args[@]}" tests/e2e/fixtures/prosody.cfg.lua.in >"$dir/prosody.cfg.lua"
if unfilled="$(grep -v '^ *--' "$dir/prosody.cfg.lua" | grep -oE '@[A-Z_]+@')"; then
  die "unfilled placeholder(s) $(echo "$unfilled" | sort -u | tr '\n' ' ')in $dir/prosody.cfg.lua: fill them in scripts/demo.sh"
fi

declare -A password=([alice]="$(openssl rand -hex 8)" [bob]="$(openssl rand -hex 8)")
for user in alice bob; do
  timeout 30 prosodyctl --config "$dir/prosody.cfg.lua" register "$user" "$domain" "${password[$user]}"
done
accounts=(--account "alice:${password[alice]}" --account "bob:${password[bob]}")

echo "==> starting Prosody on 127.0.0.1:$c2s_port (log: $dir/prosody.log)"
prosody --config "$dir/prosody.cfg.lua" -F >"$dir/prosody.console" 2>&1 &
prosody_pid=$!
wait_for "Prosody on port $c2s_port" 20 port_open "$c2s_port"

# --- The gateway ------------------------------------------------------------------
if [[ -n "$image" ]]; then
  container="xmppgw-demo-$$"
  echo "==> starting the gateway from image $image (container $container, host network; log: $dir/gateway.log)"
  # The image's own config (/etc/xmpp-ws-gateway/gateway.toml, the shipped file) and user; the
  # listeners moved back to loopback, since the host network is this machine's.
  "${PODMAN_RUN[@]}" --rm --name "$container" --network host \
    -v "$dir/ca.pem:/run/xmppgw-demo/ca.pem:ro" -e SSL_CERT_FILE=/run/xmppgw-demo/ca.pem \
    -e "XMPPGW_LISTENER__ADDRESS=127.0.0.1:$ws_port" -e "XMPPGW_ADMIN__ADDRESS=127.0.0.1:$admin_port" \
    -e "XMPPGW_LISTENER__ALLOWED_ORIGINS=$page_origins" \
    "$image" >"$dir/gateway.log" 2>&1 &
  gateway_pid=$!
else
  if [[ -n "${GATEWAY_BIN:-}" ]]; then
    gateway_bin="$GATEWAY_BIN"
  else
    echo "==> building the gateway (release)"
    cargo build --release --locked --bin xmpp-ws-gateway
    target_dir="$(cargo metadata --format-version 1 --no-deps | json_field target_directory)"
    gateway_bin="$target_dir/release/xmpp-ws-gateway"
  fi
  echo "==> starting the gateway with config/gateway.toml (log: $dir/gateway.log)"
  SSL_CERT_FILE="$dir/ca.pem" XMPPGW_LISTENER__ALLOWED_ORIGINS="$page_origins" \
    "$gateway_bin" --config config/gateway.toml 2>"$dir/gateway.log" &
  gateway_pid=$!
fi
gateway_ready() {
  kill -0 "$gateway_pid" || die "the gateway exited; see $dir/gateway.log: $(tail -5 "$dir/gateway.log")"
  grep -q 'url=ws://' "$dir/gateway.log"
}
wait_for "the gateway to log its url" 60 gateway_ready
url="$(grep -o 'url="\?ws://[^ ",]*' "$dir/gateway.log" | head -1 | sed 's/^url="\?//')"

# --- Through the gateway ------------------------------------------------------------
echo "==> xmpp.js: alice and bob log in through the gateway and chat"
chat="$(node tests/e2e/js/xmppjs-chat.mjs --url "$url" --domain "$domain" \
  --user-a alice --password-a "${password[alice]}" --user-b bob --password-b "${password[bob]}" \
  --body "hello from scripts/demo.sh" --timeout-ms 20000 2>"$dir/client.log" | tail -1)" || true
node -e 'const r=JSON.parse(process.argv[1]||"{}");
  console.log(`    ok=${r.ok} login=${r.a?.mechanism} in ${r.a?.ms} ms, roster result=${r.roster?.result_received},`
    + ` body=${JSON.stringify(r.message?.body_received)}, receipt=${r.receipt?.received}, clean close=${r.disconnect?.clean}`
    + (r.error ? `, error: ${r.error}` : ""));
  process.exit(r.ok ? 0 : 1)' "$chat" \
  || { ((check == 0)) || die "the chat failed; client log: $dir/client.log"; \
       echo "    the chat failed; client log: $dir/client.log (servers stay up for a look)"; }

echo "==> alice and bob become mutual contacts"
friends="$(node scripts/demo/demo.mjs befriend --url "$url" --domain "$domain" "${accounts[@]}" 2>>"$dir/client.log")" \
  || die "making alice and bob contacts failed: $(json_field error <<<"$friends"); see $dir/client.log"
echo "    subscription: $(json_field subscription <<<"$friends")"

echo "==> chat page on http://127.0.0.1:$page_port/ (Converse.js from tests/e2e/js/node_modules)"
node scripts/demo/demo.mjs serve --port "$page_port" --url "$url" --domain "$domain" "${accounts[@]}" \
  >"$dir/page.log" 2>&1 &
page_pid=$!
wait_for "the chat page server" 20 grep -q '^ready' "$dir/page.log"

if ((check == 0)); then
  cat <<INFO

The gateway is running.
  Chat page:      http://127.0.0.1:$page_port/          (alice; open http://127.0.0.1:$page_port/?as=bob in another tab for bob)
  WebSocket URL:  $url   (subprotocol "xmpp")
  Domain:         $domain
  Accounts:       alice@$domain  password ${password[alice]}
                  bob@$domain    password ${password[bob]}
  Metrics:        http://127.0.0.1:$admin_port/metrics   (also /healthz, /readyz)
  Logs:           $dir/gateway.log  $dir/prosody.log
Press Ctrl-C to stop.
INFO
  wait -n "$gateway_pid" "$prosody_pid" "$page_pid" || true
  echo "a server exited on its own; see $dir/gateway.log, $dir/prosody.log and $dir/page.log" >&2
  exit 1
fi

# --- --check: the browser, the admin endpoints, the container, the stop -------------------
echo "==> headless Chromium: the chat page as alice, a message from bob, a reply from the page"
result="$(node scripts/demo/demo.mjs check --page "http://127.0.0.1:$page_port/" --url "$url" --domain "$domain" \
  "${accounts[@]}" --screenshot "$screenshot" 2>"$dir/browser.log" | tail -1)" || true
node -e 'const r=JSON.parse(process.argv[1]||"{}");
  for (const s of r.steps ?? []) console.log(`    ${s.ok ? "ok" : "FAILED"} ${s.name} (${s.ms} ms)`);
  if (r.error) console.log(`    error: ${r.error}`);
  process.exit(r.ok ? 0 : 1)' "$result" || die "the browser check failed (screenshot: $screenshot; log: $dir/browser.log)"
echo "    screenshot: $screenshot"

echo "==> admin endpoints"
[[ "$(http_get "http://127.0.0.1:$admin_port/healthz")" == ok ]] || die "/healthz did not answer ok"
[[ "$(http_get "http://127.0.0.1:$admin_port/readyz")" == ready ]] || die "/readyz did not answer ready"
metrics="$(http_get "http://127.0.0.1:$admin_port/metrics")" || die "/metrics did not answer"
metric() { awk -v name="$1" '$1 == name { print $2 }' <<<"$metrics"; }
clean="$(metric 'xmppgw_sessions_ended_total{outcome="clean"}')"
((${clean:-0} >= 4)) || die "expected at least 4 clean sessions (chat + contacts), /metrics says ${clean:-none}"
for name in process_resident_memory_bytes process_open_fds process_max_fds process_start_time_seconds; do
  [[ -n "$(metric "$name")" ]] || die "/metrics has no $name"
done
echo "    /healthz ok, /readyz ready; /metrics: $clean clean sessions, $(metric xmppgw_sessions_active) active," \
  "resident $(($(metric process_resident_memory_bytes | cut -d. -f1) / 1048576)) MiB," \
  "$(metric process_open_fds)/$(metric process_max_fds) descriptors"

if [[ -n "$image" ]]; then
  echo "==> the container's process"
  pid="$(podman inspect --format '{{.State.Pid}}' "$container")"
  comm="$(cat "/proc/$pid/comm")"
  [[ "$comm" == xmpp-ws-gatew* ]] || die "the container's process $pid is $comm, not the gateway"
  uids="$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status")"
  [[ "$uids" == "10001 10001 10001 10001" ]] || die "the gateway runs as uid(s) $uids, not 10001"
  limit="$(awk '/^Max open files/ { print $4 }' "/proc/$pid/limits")"
  [[ "$(metric process_max_fds)" == "$limit" ]] \
    || die "/metrics says process_max_fds $(metric process_max_fds), the container's process has $limit"
  echo "    pid $pid ($comm) runs as uid 10001 (real, effective, saved, fs); /metrics reports its open-files limit ($limit)"
fi

echo "==> stopping: SIGTERM to the gateway must drain and exit 0"
kill -TERM "$gateway_pid"
status=0
wait "$gateway_pid" || status=$?
gateway_pid=""
((status == 0)) || die "the gateway exited with $status after SIGTERM; see $dir/gateway.log"
echo "demo check: passed in $((SECONDS - started)) s (chat, contacts, browser page, admin endpoints${image:+, container user}, clean stop)"
echo "screenshot: $screenshot"
