#!/usr/bin/env bash
# The gateway's performance comparison in one go (see docs/PERFORMANCE.md and issue 7).
#
# Builds the gateway and the benchmark tools (release, --features bench), starts two fake
# upstreams (plaintext and STARTTLS) and a gateway on loopback, then measures, in ROUNDS rounds
# with the gateway and the direct TCP baseline alternating:
#   - echo throughput (stanzas/s), gateway / direct;
#   - low-load round-trip time with every process pinned to one CPU (p50/p99);
#   - session setup rate, gateway / direct;
#   - memory per idle authenticated session at MEM_SESSIONS sessions (gateway RSS delta / N),
#     with a fresh gateway per round;
# each with a plaintext and a TLS (STARTTLS) upstream; then the splitter microbenchmark.
# Medians go into the block between the bench markers of docs/PERFORMANCE.md; the raw JSON lines
# into docs/bench-results.jsonl. Runs in about 5 minutes after the build.
#
# Usage: scripts/bench.sh            (ROUNDS=5 MEM_ROUNDS=3 MEM_SESSIONS=9000 by default)
#        ROUNDS=3 MEM_SESSIONS=2000 scripts/bench.sh   (a quicker, rougher run)
#        scripts/bench.sh --smoke    (what CI runs so the script cannot rot: every step once, with
#                                     debug builds and tiny counts, the report written to a
#                                     temporary copy of docs/PERFORMANCE.md; measures nothing)
# Needs: cargo, python3, taskset (util-linux), an open-files limit above 2 * MEM_SESSIONS + 100.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SMOKE=0
case "${1:-}" in
    --smoke) SMOKE=1 ;;
    "") ;;
    *) echo "usage: scripts/bench.sh [--smoke]" >&2; exit 2 ;;
esac
if [ "$SMOKE" = 1 ]; then
    ROUNDS=1 MEM_ROUNDS=1 MEM_SESSIONS=100
    # Sessions and messages of the throughput, setup and round-trip runs.
    THROUGHPUT=(--sessions 10 --messages 20) SETUP=(--sessions 50) RTT=(--messages 50)
else
    THROUGHPUT=(--sessions 200 --messages 500) SETUP=(--sessions 2000) RTT=(--messages 3000)
fi
ROUNDS=${ROUNDS:-5}
MEM_ROUNDS=${MEM_ROUNDS:-3}
MEM_SESSIONS=${MEM_SESSIONS:-9000}
BASE_PORT=${BASE_PORT:-15220}
PLAIN_PORT=$((BASE_PORT + 2))
TLS_PORT=$((BASE_PORT + 3))
WS_PORT=$((BASE_PORT + 60))
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
COMMAND="scripts/bench.sh (ROUNDS=$ROUNDS MEM_ROUNDS=$MEM_ROUNDS MEM_SESSIONS=$MEM_SESSIONS)"
# The smoke run uses the debug profile: the test suite has already compiled its dependencies.
[ "$SMOKE" = 0 ] || BIN=$TARGET_DIR/debug

# Each idle session holds one socket in the load generator and two in the gateway.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((2 * MEM_SESSIONS + 100)) ]; then
    echo "open-files limit $(ulimit -n) is too low for MEM_SESSIONS=$MEM_SESSIONS" >&2
    exit 2
fi

echo "== build" >&2
if [ "$SMOKE" = 1 ]; then
    # With the splitter bench in the same build, dependencies get the features the test suite
    # gave them (dev-dependencies switch on some, e.g. tokio's test-util), so nothing the suite
    # compiled is compiled again.
    cargo build --locked --features bench --bins --bench splitter
else
    cargo build --release --features bench --bins
    cargo bench --bench splitter --no-run
fi

WORK=$(mktemp -d)
RESULTS=$WORK/results.jsonl
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Source addresses for the load generator's connections, to spread ephemeral ports.
SOURCES=$(seq -s, -f '127.0.0.%g' 2 17)

wait_ready() { # file
    for _ in $(seq 1 100); do
        grep -q '^ready' "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "not ready: $1" >&2
    cat "$1" >&2
    exit 1
}

wait_port() { # port
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

"$BIN/xmppgw-fake-upstream" --listen "127.0.0.1:$PLAIN_PORT" --tls none --domain plain.example \
    >"$WORK/upstream-plain.log" 2>&1 &
PLAIN_PID=$!
PIDS+=("$PLAIN_PID")
"$BIN/xmppgw-fake-upstream" --listen "127.0.0.1:$TLS_PORT" --tls starttls --domain tls.example \
    --ca-out "$WORK/ca.pem" >"$WORK/upstream-tls.log" 2>&1 &
TLS_PID=$!
PIDS+=("$TLS_PID")
wait_ready "$WORK/upstream-plain.log"
wait_ready "$WORK/upstream-tls.log"

cat >"$WORK/gateway.toml" <<TOML
[listener]
address = "127.0.0.1:$WS_PORT"
path = "/xmpp-websocket"

allow_missing_origin = true

[limits]
max_sessions = 20000
max_sessions_per_address = 20000

[admin]
address = ""

[log]
level = "warn"

[[upstream]]
domain = "plain.example"
address = "127.0.0.1:$PLAIN_PORT"
tls = "none"

[[upstream]]
domain = "tls.example"
address = "127.0.0.1:$TLS_PORT"
tls = "starttls"
ca_file = "$WORK/ca.pem"
TOML

GATEWAY_PID=
start_gateway() {
    "$BIN/xmpp-ws-gateway" --config "$WORK/gateway.toml" >>"$WORK/gateway.log" 2>&1 &
    GATEWAY_PID=$!
    PIDS+=("$GATEWAY_PID")
    wait_port "$WS_PORT"
}
stop_gateway() {
    kill "$GATEWAY_PID" 2>/dev/null || true
    wait "$GATEWAY_PID" 2>/dev/null || true
}

# loadgen SCENARIO UPSTREAM(plain|tls) TARGET(gateway|direct) ARGS...
loadgen() {
    local scenario=$1 upstream=$2 target=$3
    shift 3
    local domain=plain.example port=$PLAIN_PORT tls=none
    if [ "$upstream" = tls ]; then domain=tls.example port=$TLS_PORT tls=starttls; fi
    local where=(--target ws --url "ws://127.0.0.1:$WS_PORT/xmpp-websocket" --gateway-pid "$GATEWAY_PID")
    if [ "$target" = direct ]; then
        where=(--target tcp --addr "127.0.0.1:$port" --tls "$tls" --ca-file "$WORK/ca.pem")
    fi
    local line
    line=$("${PIN[@]}" "$BIN/xmppgw-loadgen" "${where[@]}" --domain "$domain" --source-ips "$SOURCES" \
        --label "$scenario/$upstream/$target" --deadline-secs 120 "$@")
    echo "$line" >>"$RESULTS"
    echo "$line" | cut -c1-220 >&2
}

# Both orders, alternating by round, so that drift on the shared machine hits both sides.
pair() { # round scenario upstream args...
    local round=$1 scenario=$2 upstream=$3
    shift 3
    if [ $((round % 2)) -eq 1 ]; then
        loadgen "$scenario" "$upstream" gateway "$@"
        loadgen "$scenario" "$upstream" direct "$@"
    else
        loadgen "$scenario" "$upstream" direct "$@"
        loadgen "$scenario" "$upstream" gateway "$@"
    fi
}

PIN=()
start_gateway

echo "== throughput and setup rate ($ROUNDS rounds)" >&2
for round in $(seq 1 "$ROUNDS"); do
    for upstream in plain tls; do
        pair "$round" throughput "$upstream" --workload echo "${THROUGHPUT[@]}" --window 10
        pair "$round" setup "$upstream" --workload echo "${SETUP[@]}" --connect-concurrency 64 --messages 0
    done
done

echo "== round-trip time, every process pinned to CPU 0 ($ROUNDS rounds)" >&2
for pid in "$GATEWAY_PID" "$PLAIN_PID" "$TLS_PID"; do taskset -apc 0 "$pid" >/dev/null; done
PIN=(taskset -c 0)
for round in $(seq 1 "$ROUNDS"); do
    for upstream in plain tls; do
        pair "$round" rtt-pinned "$upstream" --workload echo --sessions 1 "${RTT[@]}" --window 1 --threads 1
    done
done
PIN=()
ALL_CPUS="0-$(($(nproc) - 1))"
for pid in "$GATEWAY_PID" "$PLAIN_PID" "$TLS_PID"; do taskset -apc "$ALL_CPUS" "$pid" >/dev/null; done
stop_gateway

echo "== memory per idle session at $MEM_SESSIONS sessions ($MEM_ROUNDS rounds, fresh gateway each)" >&2
for round in $(seq 1 "$MEM_ROUNDS"); do
    for upstream in plain tls; do
        start_gateway
        sleep 0.5
        loadgen memory "$upstream" gateway --workload idle --sessions "$MEM_SESSIONS" --connect-concurrency 128 \
            --hold-secs 3
        stop_gateway
    done
done

echo "== splitter microbenchmark" >&2
if [ "$SMOKE" = 1 ]; then
    # The bench's own main, once, in the test profile (as cargo test --all-targets runs it).
    cargo test --locked --bench splitter 2>/dev/null | grep '^{' | tee -a "$RESULTS" >&2
else
    cargo bench --bench splitter 2>/dev/null | grep '^{' | tee -a "$RESULTS" >&2
fi

MACHINE="$(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); $(nproc) CPUs; $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
REPORT=$ROOT/docs/PERFORMANCE.md
if [ "$SMOKE" = 1 ]; then
    cp "$REPORT" "$WORK/PERFORMANCE.md"
    REPORT=$WORK/PERFORMANCE.md
else
    cp "$RESULTS" "$ROOT/docs/bench-results.jsonl"
fi
python3 "$ROOT/scripts/bench_report.py" "$RESULTS" "$REPORT" \
    --command "$COMMAND" --machine "$MACHINE" --commit "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+changes')"
if [ "$SMOKE" = 1 ]; then
    # Every scenario produced a line, and the report took them.
    for label in throughput/plain/gateway throughput/tls/direct setup/tls/gateway rtt-pinned/plain/gateway \
        memory/tls/gateway; do
        grep -q "\"label\":\"$label\"" "$RESULTS" || { echo "bench smoke: no result for $label" >&2; exit 1; }
    done
    grep -q '"bench":"splitter"' "$RESULTS" || { echo "bench smoke: no splitter result" >&2; exit 1; }
    if grep '^{"label"' "$RESULTS" | grep -v '"errors":0,'; then echo "bench smoke: a run had errors" >&2; exit 1; fi
    cmp -s "$ROOT/docs/PERFORMANCE.md" "$REPORT" && { echo "bench smoke: the report was not rewritten" >&2; exit 1; }
    echo "== bench smoke: $(grep -c '^{' "$RESULTS") result lines, report written to a temporary copy (docs/ untouched)" >&2
else
    echo "== wrote docs/PERFORMANCE.md and docs/bench-results.jsonl" >&2
fi
