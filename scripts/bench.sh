#!/usr/bin/env bash
# The gateway's performance comparison in one go (see docs/PERFORMANCE.md, issues 7 and 13).
#
# Builds the gateway and the benchmark tools (release, --features bench), starts two fake
# upstreams (plaintext and STARTTLS), the gateway, and the floor relay (xmppgw-floor-relay: the
# same HTTP/WebSocket stack and runtime, WebSocket messages <-> TCP bytes, no XML) on loopback,
# then measures, in ROUNDS rounds with the gateway, the floor relay and the direct TCP baseline
# taking turns (the order rotates every round):
#   - echo throughput (stanzas/s) and the relay's CPU time per echoed stanza;
#   - low-load round-trip time with every process pinned to one CPU (p50/p99);
#   - session setup rate and the relay's CPU time per session;
#   - memory per idle authenticated session at MEM_SESSIONS sessions (relay RSS delta / N),
#     with a fresh gateway and a fresh floor relay per round;
# each with a plaintext and a TLS (STARTTLS) upstream; then the splitter microbenchmark, and
# instruction counts under callgrind (when valgrind is installed; repeatable whatever the load
# of the machine): the XML work per stanza (benches/stanza.rs) and whole-process instructions
# per echoed stanza of the gateway and of the floor relay, at window 10 and at window 1.
# Medians go into the block between the bench markers of docs/PERFORMANCE.md; the raw JSON lines
# into docs/bench-results.jsonl. Runs in about 12 minutes after the build.
#
# With BASELINE_BIN set to another build of the gateway (say, of the commit before a change),
# that build runs as a fourth target in every round beside the gateway built here (same config,
# its own port), and the report adds a table of gateway / baseline ratios measured side by side.
# BASELINE_NAME names it in the report (default: the path). Adds about a third to the run time.
#
# Usage: scripts/bench.sh            (ROUNDS=5 MEM_ROUNDS=3 MEM_SESSIONS=9000 by default)
#        ROUNDS=3 MEM_SESSIONS=2000 scripts/bench.sh   (a quicker, rougher run)
#        BASELINE_BIN=/tmp/base/release/xmpp-ws-gateway BASELINE_NAME=859b441 scripts/bench.sh
#        scripts/bench.sh --bosh     (only the BOSH-beside-WebSocket section, full size; the
#                                     report goes to a temporary copy and its BOSH table is
#                                     printed, docs/ untouched)
#        scripts/bench.sh --smoke    (what CI runs so the script cannot rot: every step once, with
#                                     debug builds and tiny counts, the report written to a
#                                     temporary copy of docs/PERFORMANCE.md; measures nothing)
# Needs: cargo, python3, taskset (util-linux), an open-files hard limit of 2 * MEM_SESSIONS + 768
# (the gateway's descriptor budget; with less, memory is measured at fewer sessions, said so);
# valgrind for the instruction counts (skipped, and reported as not measured, without it).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SMOKE=0
BOSH_ONLY=0
case "${1:-}" in
    --smoke) SMOKE=1 ;;
    --bosh) BOSH_ONLY=1 ;;
    "") ;;
    *) echo "usage: scripts/bench.sh [--smoke|--bosh]" >&2; exit 2 ;;
esac
if [ "$SMOKE" = 1 ]; then
    ROUNDS=1 MEM_ROUNDS=1 MEM_SESSIONS=100
    # Sessions and messages of the throughput, setup and round-trip runs.
    THROUGHPUT=(--sessions 10 --messages 20) SETUP=(--sessions 50) RTT=(--messages 50)
    # BOSH beside WebSocket on the same gateway: rounds, idle sessions, sessions set up.
    BOSH_ROUNDS=1 BOSH_SESSIONS=50 BOSH_SETUP=(--sessions 20)
    # Stanzas per callgrind run of benches/stanza.rs, and messages per session of the
    # whole-process callgrind runs (two counts each: the difference cancels start-up costs).
    COUNT_STANZAS=(100 200) COUNT_MESSAGES=(2 4)
else
    THROUGHPUT=(--sessions 200 --messages 500) SETUP=(--sessions 2000) RTT=(--messages 3000)
    BOSH_ROUNDS=${BOSH_ROUNDS:-3} BOSH_SESSIONS=${BOSH_SESSIONS:-2000} BOSH_SETUP=(--sessions 500)
    COUNT_STANZAS=(10000 20000) COUNT_MESSAGES=(100 300)
fi
ROUNDS=${ROUNDS:-5}
MEM_ROUNDS=${MEM_ROUNDS:-3}
MEM_SESSIONS=${MEM_SESSIONS:-9000}
# The gateway keeps 128 descriptors for itself, lends an eighth of the rest (4 to 512) to
# connects and shares the remainder out in slots of 2, one per connection
# (src/listener/descriptors.rs); it leaves connections beyond in the backlog. A process here can
# have at most the hard open-files limit, which only a privileged user can raise.
HARD_NOFILE=$(ulimit -Hn)
if [ "$HARD_NOFILE" != unlimited ]; then
    USABLE=$((HARD_NOFILE - 128))
    LENT=$((USABLE / 8 < 4 ? 4 : USABLE / 8 > 512 ? 512 : USABLE / 8))
    SLOTS=$(((USABLE - LENT) / 2))
    if [ "$MEM_SESSIONS" -gt $((SLOTS - 32)) ]; then
        echo "note: the open-files hard limit ($HARD_NOFILE) lets the gateway hold $SLOTS connections;" \
            "memory is measured at $((SLOTS - 32)) sessions instead of $MEM_SESSIONS" >&2
        MEM_SESSIONS=$((SLOTS - 32))
    fi
fi
BASE_PORT=${BASE_PORT:-15220}
PLAIN_PORT=$((BASE_PORT + 2))
TLS_PORT=$((BASE_PORT + 3))
WS_PORT=$((BASE_PORT + 60))
FLOOR_PORT=$((BASE_PORT + 61))
# Ports of the gateway and the floor relay while they run under callgrind.
COUNT_WS_PORT=$((BASE_PORT + 62))
COUNT_FLOOR_PORT=$((BASE_PORT + 63))
# The baseline gateway's ports (BASELINE_BIN), measured and under callgrind.
BASELINE_PORT=$((BASE_PORT + 64))
COUNT_BASELINE_PORT=$((BASE_PORT + 65))
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
COMMAND="scripts/bench.sh (ROUNDS=$ROUNDS MEM_ROUNDS=$MEM_ROUNDS MEM_SESSIONS=$MEM_SESSIONS)"
# The smoke run uses the debug profile: the test suite has already compiled its dependencies.
[ "$SMOKE" = 0 ] || BIN=$TARGET_DIR/debug
BASELINE_BIN=${BASELINE_BIN:-}
# The smoke run exercises the baseline path with the gateway built here as its own baseline.
[ "$SMOKE" = 0 ] || [ -n "$BASELINE_BIN" ] || BASELINE_BIN=$BIN/xmpp-ws-gateway
BASELINE_NAME=${BASELINE_NAME:-$BASELINE_BIN}
if [ -n "$BASELINE_BIN" ] && [ ! -x "$BASELINE_BIN" ] && [ "$SMOKE" = 0 ]; then
    echo "BASELINE_BIN=$BASELINE_BIN is not an executable" >&2
    exit 2
fi
[ -z "$BASELINE_BIN" ] || COMMAND="BASELINE_BIN=… BASELINE_NAME=$BASELINE_NAME $COMMAND"
# The relays measured: the gateway, the floor relay and, with BASELINE_BIN, the baseline.
RELAYS=(gateway floor)
[ -z "$BASELINE_BIN" ] || RELAYS+=(baseline)

# Each idle session holds one socket in the load generator and two in the relay.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((2 * MEM_SESSIONS + 100)) ]; then
    echo "open-files limit $(ulimit -n) is too low for MEM_SESSIONS=$MEM_SESSIONS" >&2
    exit 2
fi

echo "== build" >&2
# Everything is built here, so that the binaries measured are those of the commit named in the
# report even if the sources change while the benchmark runs.
COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src benches Cargo.toml Cargo.lock || echo '+changes')"
# The path of a bench target's executable (cargo's JSON messages name it).
bench_executable() { # cargo-subcommand bench-name
    cargo "$1" --locked --bench "$2" --no-run --message-format=json \
        | python3 -c 'import json, sys; print(*[m["executable"] for m in map(json.loads, sys.stdin)
                if m.get("executable") and m["target"]["kind"] == ["bench"] and m["target"]["name"] == sys.argv[1]])' "$2"
}
if [ "$SMOKE" = 1 ]; then
    # With the splitter bench in the same build, dependencies get the features the test suite
    # gave them (dev-dependencies switch on some, e.g. tokio's test-util), so nothing the suite
    # compiled is compiled again.
    cargo build --locked --features bench --bins --bench splitter
    # The bench mains in the test profile (as cargo test --all-targets builds them).
    SPLITTER_BIN=$(bench_executable test splitter)
    STANZA_BIN=$(bench_executable test stanza)
else
    cargo build --release --features bench --bins
    SPLITTER_BIN=$(bench_executable bench splitter)
    STANZA_BIN=$(bench_executable bench stanza)
fi
HAVE_VALGRIND=0
command -v valgrind >/dev/null && HAVE_VALGRIND=1

WORK=$(mktemp -d)
RESULTS=$WORK/results.jsonl
if [ "$SMOKE" = 0 ]; then
    # Kept whatever happens (a run cut short still leaves what it measured).
    mkdir -p "$TARGET_DIR/bench"
    RESULTS=$TARGET_DIR/bench/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl
    echo "raw results: $RESULTS" >&2
fi
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Slower variants for processes starting under valgrind.
wait_ready_slow() { # file
    for _ in $(seq 1 600); do
        grep -q '^ready' "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "not ready: $1" >&2
    cat "$1" >&2
    exit 1
}
wait_port_slow() { # port
    for _ in $(seq 1 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

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

gateway_config() { # port
    cat <<TOML
[listener]
address = "127.0.0.1:$1"
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
}
gateway_config "$WS_PORT" >"$WORK/gateway.toml"
gateway_config "$COUNT_WS_PORT" >"$WORK/gateway-count.toml"
gateway_config "$BASELINE_PORT" >"$WORK/baseline.toml"
gateway_config "$COUNT_BASELINE_PORT" >"$WORK/baseline-count.toml"

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

# The baseline build of the gateway (BASELINE_BIN), with the same config on its own port.
BASELINE_PID=
start_baseline() {
    "$BASELINE_BIN" --config "$WORK/baseline.toml" >>"$WORK/baseline.log" 2>&1 &
    BASELINE_PID=$!
    PIDS+=("$BASELINE_PID")
    wait_port "$BASELINE_PORT"
}
stop_baseline() {
    kill "$BASELINE_PID" 2>/dev/null || true
    wait "$BASELINE_PID" 2>/dev/null || true
}

# The floor relay: the gateway's HTTP/WebSocket stack, runtime and buffer sizes, no XML.
floor_args() { # port
    echo --listen "127.0.0.1:$1" --upstream "plain.example=127.0.0.1:$PLAIN_PORT" \
        --starttls-upstream "tls.example=127.0.0.1:$TLS_PORT" --ca-file "$WORK/ca.pem"
}
FLOOR_PID=
start_floor() {
    : >"$WORK/floor.log"
    # shellcheck disable=SC2046
    "$BIN/xmppgw-floor-relay" $(floor_args "$FLOOR_PORT") >>"$WORK/floor.log" 2>&1 &
    FLOOR_PID=$!
    PIDS+=("$FLOOR_PID")
    wait_ready "$WORK/floor.log"
}
stop_floor() {
    kill "$FLOOR_PID" 2>/dev/null || true
    wait "$FLOOR_PID" 2>/dev/null || true
}

# loadgen SCENARIO UPSTREAM(plain|tls) TARGET(gateway|floor|baseline|direct) ARGS...
loadgen() {
    local scenario=$1 upstream=$2 target=$3
    shift 3
    local domain=plain.example port=$PLAIN_PORT tls=none
    if [ "$upstream" = tls ]; then domain=tls.example port=$TLS_PORT tls=starttls; fi
    local where
    case "$target" in
        gateway) where=(--target ws --url "ws://127.0.0.1:$WS_PORT/xmpp-websocket" --gateway-pid "$GATEWAY_PID") ;;
        bosh) where=(--target bosh --url "http://127.0.0.1:$WS_PORT/http-bind" --gateway-pid "$GATEWAY_PID") ;;
        floor) where=(--target ws --url "ws://127.0.0.1:$FLOOR_PORT/$domain" --gateway-pid "$FLOOR_PID") ;;
        baseline) where=(--target ws --url "ws://127.0.0.1:$BASELINE_PORT/xmpp-websocket" --gateway-pid "$BASELINE_PID") ;;
        direct) where=(--target tcp --addr "127.0.0.1:$port" --tls "$tls" --ca-file "$WORK/ca.pem") ;;
        # A relay on its own port and pid (the callgrind runs): count-gateway:PORT:PID,
        # count-floor:PORT:PID, count-baseline:PORT:PID.
        count-*)
            local spec=${target#count-} kind port pid
            IFS=: read -r kind port pid <<<"$spec"
            if [ "$kind" != floor ]; then
                where=(--target ws --url "ws://127.0.0.1:$port/xmpp-websocket" --gateway-pid "$pid")
            else
                where=(--target ws --url "ws://127.0.0.1:$port/$domain" --gateway-pid "$pid")
            fi
            target=$kind
            ;;
    esac
    local line
    line=$("${PIN[@]}" "$BIN/xmppgw-loadgen" "${where[@]}" --domain "$domain" --source-ips "$SOURCES" \
        --label "$scenario/$upstream/$target" --deadline-secs 120 "$@")
    echo "$line" >>"$RESULTS"
    echo "$line" | cut -c1-220 >&2
}

# The targets one after the other, the order rotating by round, so that drift on the shared
# machine hits each of them.
trio() { # round scenario upstream args...
    local round=$1 scenario=$2 upstream=$3 target
    shift 3
    local -a order=("${RELAYS[@]}" direct)
    for _ in $(seq 1 $((round % ${#order[@]}))); do order=("${order[@]:1}" "${order[0]}"); done
    for target in "${order[@]}"; do loadgen "$scenario" "$upstream" "$target" "$@"; done
}

PIN=()
if [ "$BOSH_ONLY" = 0 ]; then
for relay in "${RELAYS[@]}"; do "start_$relay"; done

echo "== throughput and setup rate ($ROUNDS rounds)" >&2
for round in $(seq 1 "$ROUNDS"); do
    for upstream in plain tls; do
        trio "$round" throughput "$upstream" --workload echo "${THROUGHPUT[@]}" --window 10
        trio "$round" setup "$upstream" --workload echo "${SETUP[@]}" --connect-concurrency 64 --messages 0
    done
done

echo "== round-trip time, every process pinned to CPU 0 ($ROUNDS rounds)" >&2
for pid in "$GATEWAY_PID" "$FLOOR_PID" $BASELINE_PID "$PLAIN_PID" "$TLS_PID"; do taskset -apc 0 "$pid" >/dev/null; done
PIN=(taskset -c 0)
for round in $(seq 1 "$ROUNDS"); do
    for upstream in plain tls; do
        trio "$round" rtt-pinned "$upstream" --workload echo --sessions 1 "${RTT[@]}" --window 1 --threads 1
    done
done
PIN=()
ALL_CPUS="0-$(($(nproc) - 1))"
for pid in "$PLAIN_PID" "$TLS_PID"; do taskset -apc "$ALL_CPUS" "$pid" >/dev/null; done
for relay in "${RELAYS[@]}"; do "stop_$relay"; done

echo "== memory per idle session at $MEM_SESSIONS sessions ($MEM_ROUNDS rounds, fresh relay each)" >&2
for round in $(seq 1 "$MEM_ROUNDS"); do
    for upstream in plain tls; do
        relays=("${RELAYS[@]}")
        for _ in $(seq 1 $((round % ${#relays[@]}))); do relays=("${relays[@]:1}" "${relays[0]}"); done
        for relay in "${relays[@]}"; do
            "start_$relay"
            sleep 0.5
            loadgen memory "$upstream" "$relay" --workload idle --sessions "$MEM_SESSIONS" --connect-concurrency 128 \
                --hold-secs 3
            "stop_$relay"
        done
    done
done

fi # BOSH_ONLY

echo "== BOSH beside WebSocket on the same gateway ($BOSH_ROUNDS rounds, fresh gateway for each memory run)" >&2
# Each BOSH session holds two connections (one request waiting at the gateway, one free to
# send), as browsers run BOSH; the WebSocket runs use the same counts for the ratio.
for round in $(seq 1 "$BOSH_ROUNDS"); do
    for upstream in plain tls; do
        start_gateway
        for transport in bosh gateway; do
            loadgen bosh-throughput "$upstream" "$transport" --workload echo "${THROUGHPUT[@]}" --window 10
            loadgen bosh-setup "$upstream" "$transport" --workload echo "${BOSH_SETUP[@]}" --connect-concurrency 64 \
                --messages 0
        done
        stop_gateway
        for transport in bosh gateway; do
            start_gateway
            sleep 0.5
            loadgen bosh-memory "$upstream" "$transport" --workload idle --sessions "$BOSH_SESSIONS" \
                --connect-concurrency 128 --hold-secs 3
            stop_gateway
        done
    done
done

if [ "$BOSH_ONLY" = 1 ]; then
    cp "$ROOT/docs/PERFORMANCE.md" "$WORK/PERFORMANCE.md"
    python3 "$ROOT/scripts/bench_report.py" "$RESULTS" "$WORK/PERFORMANCE.md" --command "$COMMAND" \
        --machine "$(uname -srm); $(nproc) CPUs" --commit "$COMMIT" | sed -n '/^BOSH (XEP/,/^<!-- bench:end/p'
    exit 0
fi

echo "== splitter microbenchmark" >&2
"$SPLITTER_BIN" | grep '^{' | tee -a "$RESULTS" >&2

if [ "$HAVE_VALGRIND" = 1 ]; then
    echo "== instructions per stanza under callgrind (benches/stanza.rs)" >&2
    # Instructions counted by callgrind in one run of COMMAND...
    instructions() {
        local out=$WORK/callgrind.out
        rm -f "$out"
        valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>"$WORK/valgrind.log" \
            || { cat "$WORK/valgrind.log" >&2; exit 1; }
        awk '/^totals:/ { print $2 }' "$out"
    }
    for case in classify splitter; do
        counts=()
        for stanzas in "${COUNT_STANZAS[@]}"; do
            counts+=("$(STANZA_BENCH_CASE=$case STANZA_BENCH_ITERS=$stanzas instructions "$STANZA_BIN")")
        done
        line="{\"bench\":\"instructions\",\"case\":\"$case\",\"stanzas\":[${COUNT_STANZAS[0]},${COUNT_STANZAS[1]}],\"instructions\":[${counts[0]},${counts[1]}],\"per_stanza\":$(((counts[1] - counts[0]) / (COUNT_STANZAS[1] - COUNT_STANZAS[0])))}"
        echo "$line" | tee -a "$RESULTS" >&2
    done

    echo "== instructions per echoed stanza, whole relay process under callgrind" >&2
    # Each relay runs under callgrind twice per upstream, with COUNT_MESSAGES[0] and [1] messages
    # per session; the difference of the totals over the difference of stanzas is what one more
    # echoed stanza costs, start-up and session setup cancelled out.
    COUNTED=
    count_run() { # relay upstream messages window; sets COUNTED
        local relay=$1 upstream=$2 messages=$3 window=$4 out=$WORK/callgrind-relay.out pid port
        rm -f "$out"
        # Emptied here, not only by the redirection below: that happens in the background
        # process, and until it does, wait_ready_slow would find the previous floor run's
        # "ready" line (as start_floor guards against for floor.log).
        : >"$WORK/count.log"
        if [ "$relay" = gateway ] || [ "$relay" = baseline ]; then
            local binary=$BIN/xmpp-ws-gateway config=$WORK/gateway-count.toml
            port=$COUNT_WS_PORT
            if [ "$relay" = baseline ]; then
                binary=$BASELINE_BIN config=$WORK/baseline-count.toml port=$COUNT_BASELINE_PORT
            fi
            valgrind --tool=callgrind --callgrind-out-file="$out" "$binary" \
                --config "$config" >"$WORK/count.log" 2>&1 &
            pid=$!
            PIDS+=("$pid")
            wait_port_slow "$port"
        else
            port=$COUNT_FLOOR_PORT
            # shellcheck disable=SC2046
            valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN/xmppgw-floor-relay" \
                $(floor_args "$port") >"$WORK/count.log" 2>&1 &
            pid=$!
            PIDS+=("$pid")
            wait_ready_slow "$WORK/count.log"
        fi
        loadgen "count-messages-$messages" "$upstream" "count-$relay:$port:$pid" --workload echo --sessions 10 \
            --messages "$messages" --window "$window" >/dev/null 2>&1
        kill -TERM "$pid"
        wait "$pid" 2>/dev/null || true
        COUNTED=$(awk '/^totals:/ { print $2 }' "$out")
        [ -n "$COUNTED" ] || { echo "no callgrind totals for $relay" >&2; cat "$WORK/count.log" >&2; exit 1; }
    }
    # Window 10 as in the throughput runs, and window 1: with 10 unanswered stanzas per session
    # they batch into shared reads, writes and TLS records as the timing under callgrind allows,
    # so those counts move from run to run (most with STARTTLS); one at a time, each stanza has
    # its own, and the counts repeat.
    for window in 10 1; do
        for upstream in plain tls; do
            for relay in "${RELAYS[@]}"; do
                counts=()
                for messages in "${COUNT_MESSAGES[@]}"; do
                    count_run "$relay" "$upstream" "$messages" "$window"
                    counts+=("$COUNTED")
                done
                stanzas=$((10 * (COUNT_MESSAGES[1] - COUNT_MESSAGES[0])))
                line="{\"bench\":\"relay-instructions\",\"relay\":\"$relay\",\"upstream\":\"$upstream\",\"window\":$window,\"messages_per_session\":[${COUNT_MESSAGES[0]},${COUNT_MESSAGES[1]}],\"instructions\":[${counts[0]},${counts[1]}],\"per_stanza\":$(((counts[1] - counts[0]) / stanzas))}"
                echo "$line" | tee -a "$RESULTS" >&2
            done
        done
    done
else
    echo "== instruction counts: SKIPPED (no valgrind)" >&2
fi

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
MACHINE="$(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); $(nproc) CPUs; $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
REPORT=$ROOT/docs/PERFORMANCE.md
if [ "$SMOKE" = 1 ]; then
    cp "$REPORT" "$WORK/PERFORMANCE.md"
    REPORT=$WORK/PERFORMANCE.md
else
    cp "$RESULTS" "$ROOT/docs/bench-results.jsonl"
fi
python3 "$ROOT/scripts/bench_report.py" "$RESULTS" "$REPORT" \
    --command "$COMMAND" --machine "$MACHINE" --load "$LOAD" --commit "$COMMIT" --baseline-name "$BASELINE_NAME"
if [ "$SMOKE" = 1 ]; then
    # Every scenario produced a line, and the report took them.
    for label in throughput/plain/gateway throughput/plain/floor throughput/tls/direct setup/tls/gateway \
        setup/tls/floor rtt-pinned/plain/floor rtt-pinned/plain/gateway memory/tls/gateway memory/plain/floor \
        throughput/tls/baseline memory/plain/baseline bosh-throughput/tls/bosh bosh-memory/plain/bosh \
        bosh-setup/plain/bosh; do
        grep -q "\"label\":\"$label\"" "$RESULTS" || { echo "bench smoke: no result for $label" >&2; exit 1; }
    done
    grep -q '"bench":"splitter"' "$RESULTS" || { echo "bench smoke: no splitter result" >&2; exit 1; }
    if [ "$HAVE_VALGRIND" = 1 ]; then
        for bench in '"case":"classify"' '"case":"splitter"' '"relay":"gateway","upstream":"tls"' \
            '"relay":"floor","upstream":"plain"' '"relay":"baseline","upstream":"plain"'; do
            grep -q "$bench" "$RESULTS" || { echo "bench smoke: no instruction count for $bench" >&2; exit 1; }
        done
    fi
    if grep '^{"label"' "$RESULTS" | grep -v '"errors":0,'; then echo "bench smoke: a run had errors" >&2; exit 1; fi
    cmp -s "$ROOT/docs/PERFORMANCE.md" "$REPORT" && { echo "bench smoke: the report was not rewritten" >&2; exit 1; }
    grep -q 'Gateway / baseline' "$REPORT" || { echo "bench smoke: no baseline table in the report" >&2; exit 1; }
    echo "== bench smoke: $(grep -c '^{' "$RESULTS") result lines, report written to a temporary copy (docs/ untouched)" >&2
else
    echo "== wrote docs/PERFORMANCE.md and docs/bench-results.jsonl" >&2
fi
