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
# Then every script the README names runs (tests/readme_scripts.rs checks that none is
# left out): scripts/image-check.sh builds the Dockerfile with base images made locally (no
# registry can be pulled from here) and checks the image with the demo; scripts/demo.sh --check
# runs the README's first command end to end with the release binary the image build made
# (so that build is not done twice); scripts/bench.sh --smoke runs the benchmark once, tiny.
#
# Environment:
#   SKIP_APT=1      do not try to install Debian packages (fail if missing)
#   SKIP_IMAGE=1    skip the container image (for machines without root; CI never sets it)
#   CARGO_TARGET_DIR is honoured as usual.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
script_started=$SECONDS
# shellcheck source=scripts/lib/setup.sh
source "$repo/scripts/lib/setup.sh"
die() { setup_die "$@"; }

# step TITLE: starts a step; the time each took is printed at the end.
step_times=()
current_step=""
step_started=$SECONDS
end_step() {
  [[ -z "$current_step" ]] || step_times+=("$(printf '%5d s  %s' $((SECONDS - step_started)) "$current_step")")
  current_step=""
}
step() {
  end_step
  current_step="$*"
  step_started=$SECONDS
  setup_step "$@"
}

# --- Toolchains that must already exist --------------------------------------
step "checking toolchains"
require_cargo
require_node
cargo fmt --version >/dev/null 2>&1 || die "rustfmt missing: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 || die "clippy missing: rustup component add clippy"
echo "cargo: $(cargo --version); node: $(node --version); npm: $(npm --version)"

# --- Debian packages ------------------------------------------------------------
# The end-to-end tests: prosody, lua-unbound/lua-event provide what Debian
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
# The README's scripts run below: the demo (Prosody, Chromium: in the list above), the
# container image (buildah, podman, runc, debootstrap), the benchmark's smoke run (python3 for
# its report, taskset from util-linux, valgrind for its instruction counts; python3 only where
# none is on PATH).
packages+=("${IMAGE_PACKAGES[@]}" util-linux valgrind)
command -v python3 >/dev/null || packages+=(python3)
step "Debian packages (installs the missing ones)"
install_debian_packages "${packages[@]}"
stop_system_prosody
command -v prosody >/dev/null && command -v prosodyctl >/dev/null || die "prosody is not installed"
command -v ejabberdctl >/dev/null || die "ejabberd is not installed"
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null || die "nginx is not installed"
command -v promtool >/dev/null || die "promtool is not installed (Debian package prometheus)"
command -v caddy >/dev/null || die "caddy is not installed"
[[ -x /usr/sbin/haproxy ]] || command -v haproxy >/dev/null || die "haproxy is not installed"
command -v firefox-esr >/dev/null || die "firefox-esr is not installed"
command -v certutil >/dev/null || die "certutil is not installed (Debian package libnss3-tools)"
for pkg in prosody ejabberd nginx chromium prometheus caddy haproxy firefox-esr buildah podman; do
  echo "$pkg: $(dpkg-query -W -f='${Version}' "$pkg")"
done

# --- Node clients ---------------------------------------------------------------
step "Node clients (tests/e2e/js)"
npm_clients "$repo" always

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

# --- The README's scripts ------------------------------------------------------------
# Each runs whatever failed before it; a failure is reported and fails the run at the end.
scripts_ok=()
scripts_failed=()
scripts_skipped=()
run_script() {
  if "$@"; then scripts_ok+=("$*"); else scripts_failed+=("$*"); echo "==> $* failed" >&2; status=1; fi
}
target_dir="$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
image_bin="$target_dir/image/xmpp-ws-gateway"
rm -f "$image_bin"
if [[ "${SKIP_IMAGE:-0}" == 1 ]]; then
  step "container image: SKIPPED (SKIP_IMAGE=1)"
  scripts_skipped+=("scripts/image-check.sh (SKIP_IMAGE=1)")
else
  step "scripts/image-check.sh --local-bases (the Dockerfile, built and run)"
  run_script scripts/image-check.sh --local-bases --export-binary "$image_bin"
fi
step "scripts/demo.sh --check (the README's first command)"
if [[ -x "$image_bin" ]]; then
  echo "with the image's release binary ($image_bin)"
  GATEWAY_BIN="$image_bin" run_script scripts/demo.sh --check
else
  run_script scripts/demo.sh --check
fi
step "scripts/bench.sh --smoke"
run_script scripts/bench.sh --smoke
end_step

printf '\ntime per step:\n'
printf '  %s\n' "${step_times[@]}"
printf '\nREADME scripts: %d passed, %d failed, %d skipped\n' \
  "${#scripts_ok[@]}" "${#scripts_failed[@]}" "${#scripts_skipped[@]}"
for name in "${scripts_failed[@]}"; do echo "  FAILED: $name"; done
for name in "${scripts_skipped[@]}"; do echo "  SKIPPED: $name"; done

# One total over all test binaries, as the last line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1); if ($i ~ /^ignored/) s += $(i-1) } }
     END { printf "\ntotal: %d passed, %d failed, %d skipped\n", p, f, s; if (p == 0) exit 1 }' "$log" \
  || die "no test ran"
echo "scripts/test.sh: $((SECONDS - script_started)) s in all"
exit "$status"

