#!/usr/bin/env bash
# The project's single test command (README): formatting, lints, unit and
# integration tests, and the end-to-end tests with a real Prosody and real
# browser XMPP libraries under Node.
#
# Works on a fresh Debian 12 machine, as root, with Rust, Node >= 20.10 and npm
# preinstalled: missing Debian packages are installed, Node packages come from
# the committed lockfile (npm ci). Nothing here listens beyond 127.0.0.1, and
# no fixed port is used (Prosody's own system service, if any, cannot conflict).
#
# Environment:
#   SKIP_APT=1      do not try to install Debian packages (fail if missing)
#   CARGO_TARGET_DIR is honoured as usual.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
script_started=$SECONDS

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- Toolchains that must already exist --------------------------------------
step "checking toolchains"
command -v cargo >/dev/null || die "cargo not found (install Rust first)"
command -v node >/dev/null || die "node not found (Node >= 20.10 is needed)"
command -v npm >/dev/null || die "npm not found"
cargo fmt --version >/dev/null 2>&1 || die "rustfmt missing: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 || die "clippy missing: rustup component add clippy"
node_version="$(node --version)"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=10)?0:1)' \
  || die "Node ${node_version} is too old: the e2e clients need >= 20.10"
echo "cargo: $(cargo --version); node: ${node_version}; npm: $(npm --version)"

# --- Debian packages for the end-to-end tests ---------------------------------
# prosody: the real XMPP server; lua-unbound/lua-event provide what Debian
# recommends for it (installed explicitly so the set does not depend on apt's
# recommends setting); openssl and ca-certificates for TLS tooling; nginx: the
# reverse proxy the e2e tests put in front of the gateway with deploy/'s config;
# prometheus: provides promtool, which checks /metrics output and deploy/'s
# Prometheus rules and scrape config; ejabberd and chromium: the interop matrix
# (tests/interop_matrix.rs) runs a second XMPP server and Converse.js in a
# headless browser.
packages=(prosody lua-unbound lua-event openssl ca-certificates ejabberd nginx chromium prometheus)
# caddy and haproxy: the other reverse proxies deploy/ ships a configuration for, run by the
# interop matrix and tests/e2e_proxies.rs; firefox-esr: the matrix's second browser (WebDriver
# BiDi through puppeteer-core); libnss3-tools: certutil, which makes the NSS databases through
# which both browsers trust the test CA of the gateway's wss:// listener (the matrix's h2 path;
# caddy depends on it already).
packages+=(caddy haproxy firefox-esr libnss3-tools)
missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]} > 0)); then
  [[ "${SKIP_APT:-0}" != 1 ]] || die "missing Debian packages: ${missing[*]} (SKIP_APT=1 set)"
  [[ "$(id -u)" == 0 ]] || die "missing Debian packages: ${missing[*]}; run as root or install them"
  step "installing Debian packages: ${missing[*]}"
  # Keep the packages' own services (prosody, nginx, prometheus) from starting
  # during installation (the tests run their own on free loopback ports).
  policy_added=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_started=$SECONDS
  timeout 600 apt-get update -q
  timeout 900 apt-get install -y -q --no-install-recommends "${missing[@]}"
  if ((policy_added)); then rm -f /usr/sbin/policy-rc.d; fi
  echo "apt: installed ${missing[*]} in $((SECONDS - apt_started)) s"
fi
# If a system Prosody is running anyway (e.g. started by an init system), stop
# it: it is not ours and only wastes the default ports.
if [[ -f /run/prosody/prosody.pid ]] && kill -0 "$(cat /run/prosody/prosody.pid)" 2>/dev/null; then
  step "stopping the system prosody service"
  if command -v systemctl >/dev/null && systemctl is-active --quiet prosody 2>/dev/null; then
    systemctl stop prosody || true
    systemctl disable prosody 2>/dev/null || true
  else
    service prosody stop || kill "$(cat /run/prosody/prosody.pid)" || true
  fi
fi
command -v prosody >/dev/null && command -v prosodyctl >/dev/null || die "prosody is not installed"
command -v ejabberdctl >/dev/null || die "ejabberd is not installed"
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null || die "nginx is not installed"
command -v promtool >/dev/null || die "promtool is not installed (Debian package prometheus)"
command -v caddy >/dev/null || die "caddy is not installed"
[[ -x /usr/sbin/haproxy ]] || command -v haproxy >/dev/null || die "haproxy is not installed"
command -v firefox-esr >/dev/null || die "firefox-esr is not installed"
command -v certutil >/dev/null || die "certutil is not installed (Debian package libnss3-tools)"
for pkg in prosody ejabberd nginx chromium prometheus caddy haproxy firefox-esr; do
  echo "$pkg: $(dpkg-query -W -f='${Version}' "$pkg")"
done

# --- Node clients ---------------------------------------------------------------
step "npm ci (tests/e2e/js)"
(cd tests/e2e/js && timeout 600 npm ci --no-audit --no-fund --loglevel=error)

# --- Container image -------------------------------------------------------------
# Built only where a Docker engine answers; a docker client alone (or none) is
# not a failure, just said plainly.
step "docker build (Dockerfile)"
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  timeout 1800 docker build --pull=false -t xmpp-ws-gateway:test . || die "docker build failed"
  docker run --rm xmpp-ws-gateway:test --check-config /etc/xmpp-ws-gateway/gateway.toml \
    || die "the image cannot check its own shipped config"
else
  echo "no Docker engine: skipping the image build"
fi

# --- Rust -------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings (also with the bench tools: --features bench)"
cargo clippy --all-targets --locked -- -D warnings
cargo clippy --all-targets --locked --features bench -- -D warnings

step "cargo test --doc"
cargo test --doc --locked

# The e2e tests start the debug gateway binary that cargo test builds
# (CARGO_BIN_EXE_xmpp-ws-gateway), so no separate release build is needed.
step "cargo test --all-targets -- --include-ignored (unit, integration, end-to-end)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# --no-fail-fast: report every failing test binary, not just the first.
set +e
cargo test --all-targets --locked --no-fail-fast -- --include-ignored --skip interop_matrix --skip fault_ 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The benchmark tools' own unit tests (built only with --features bench).
cargo test --locked --features bench --bins 2>&1 | tee -a "$log"
bench_status=${PIPESTATUS[0]}
((bench_status == 0)) || status=$bench_status
set -e
((status == 0)) || echo "==> cargo test failed (exit $status)" >&2

# The interop matrix prints its table (client x server x path) and the fault
# tests print their counts, so they run on their own with --nocapture; any red
# cell fails the matrix.
step "interop matrix and faults (tests/interop_matrix.rs, tests/faults.rs)"
matrix_started=$SECONDS
set +e
cargo test --locked --test interop_matrix --test faults -- --include-ignored --nocapture --test-threads=1 interop_matrix fault_ 2>&1 | tee -a "$log"
matrix_status=${PIPESTATUS[0]}
set -e
echo "interop matrix and faults: $((SECONDS - matrix_started)) s"
((matrix_status == 0)) || { echo "==> interop matrix failed (exit $matrix_status)" >&2; status=$matrix_status; }
# One total over all test binaries, as the last line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1); if ($i ~ /^ignored/) s += $(i-1) } }
     END { printf "\ntotal: %d passed, %d failed, %d skipped\n", p, f, s; if (p == 0) exit 1 }' "$log" \
  || die "no test ran"
echo "scripts/test.sh: $((SECONDS - script_started)) s in all"
exit "$status"

