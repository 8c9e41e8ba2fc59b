# shellcheck shell=bash
# What scripts/test.sh, scripts/demo.sh and scripts/image-check.sh share to run on a fresh
# Debian 12 machine: checks of the toolchains that must already be there (Rust, Node >= 20.10,
# npm), installation of missing Debian packages, and the npm clients from the committed lock
# file. Sourced, never run; defines functions and package lists, changes nothing by itself.
#
# Environment:
#   SKIP_APT=1   never install Debian packages (fail with the list of missing ones instead)

# Package lists, one per purpose; a script installs the union of the lists it needs.
# prosody + lua-unbound/lua-event (what Debian recommends for it, named so the set does not
# depend on apt's recommends setting), openssl and ca-certificates: a real XMPP server with a
# test CA, for the end-to-end tests and the demo.
PROSODY_PACKAGES=(prosody lua-unbound lua-event openssl ca-certificates)
# Debian's Chromium, driven headless by puppeteer-core (tests/e2e/js): Converse.js in the interop
# matrix, and the demo's screenshot of its chat page.
BROWSER_PACKAGES=(chromium)
# The container image (scripts/image-check.sh): buildah builds the Dockerfile (RUN steps with
# --isolation chroot), podman runs it (with runc: crun refuses hybrid cgroup hierarchies),
# debootstrap makes the bookworm base images locally where registries cannot be pulled from.
IMAGE_PACKAGES=(buildah podman runc debootstrap)
# How the scripts start a container. runc rather than Debian 12's default crun, which refuses
# machines with a hybrid cgroup hierarchy (as CI's); explicit open-files and process limits at
# or below the caller's, since a container runtime without CAP_SYS_RESOURCE cannot raise them.
PODMAN_RUN=(podman --runtime runc run --ulimit nofile=4096:4096 --ulimit nproc=4096:4096)

setup_step() { printf '\n==> %s\n' "$*"; }
setup_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# require_node: node >= 20.10 and npm on PATH (Debian 12's own nodejs is 18: too old for the
# clients, so Node comes from outside Debian and must already be installed).
require_node() {
  command -v node >/dev/null || setup_die "node not found (Node >= 20.10 is needed)"
  command -v npm >/dev/null || setup_die "npm not found"
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=10)?0:1)' \
    || setup_die "Node $(node --version) is too old: the clients need >= 20.10"
}

# require_cargo: a Rust toolchain (rustup's) on PATH.
require_cargo() {
  command -v cargo >/dev/null || setup_die "cargo not found (install Rust with rustup first)"
}

# missing_debian_packages PKG...: prints the packages (one per line) that are not installed.
missing_debian_packages() {
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
      echo "$pkg"
    fi
  done
}

# install_debian_packages PKG...: installs those of PKG... that are missing (as root, with
# apt-get; waits for another apt's lock up to 10 minutes). The packages' own services (prosody,
# nginx, prometheus...) are kept from starting during installation: the scripts run their own
# on their own ports.
install_debian_packages() {
  local missing
  mapfile -t missing < <(missing_debian_packages "$@" | sort -u)
  ((${#missing[@]} > 0)) || return 0
  [[ "${SKIP_APT:-0}" != 1 ]] || setup_die "missing Debian packages: ${missing[*]} (SKIP_APT=1 set)"
  [[ "$(id -u)" == 0 ]] || setup_die "missing Debian packages: ${missing[*]}; run as root or install them"
  setup_step "installing Debian packages: ${missing[*]}"
  local policy_added=0 started=$SECONDS
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  local apt=(apt-get -o DPkg::Lock::Timeout=600 -q)
  local status=0
  DEBIAN_FRONTEND=noninteractive timeout 600 "${apt[@]}" update || status=$?
  if ((status == 0)); then
    DEBIAN_FRONTEND=noninteractive timeout 1200 "${apt[@]}" install -y --no-install-recommends "${missing[@]}" \
      || status=$?
  fi
  if ((policy_added)); then rm -f /usr/sbin/policy-rc.d; fi
  ((status == 0)) || setup_die "apt-get failed (exit $status) installing ${missing[*]}"
  echo "apt: installed ${missing[*]} in $((SECONDS - started)) s"
}

# stop_system_prosody: a Prosody started by the init system is not ours and holds the default
# ports; stop it.
stop_system_prosody() {
  if [[ -f /run/prosody/prosody.pid ]] && kill -0 "$(cat /run/prosody/prosody.pid)" 2>/dev/null; then
    setup_step "stopping the system prosody service"
    if command -v systemctl >/dev/null && systemctl is-active --quiet prosody 2>/dev/null; then
      systemctl stop prosody || true
      systemctl disable prosody 2>/dev/null || true
    else
      service prosody stop || kill "$(cat /run/prosody/prosody.pid)" || true
    fi
  fi
}

# npm_clients REPO [always]: the Node clients of tests/e2e/js from the committed lock file.
# With "always", npm ci runs in any case (CI: a clean install); otherwise only when
# node_modules is missing or older than the lock file.
npm_clients() {
  local dir="$1/tests/e2e/js" mode="${2:-}"
  if [[ "$mode" == always || ! -f "$dir/node_modules/.package-lock.json" \
        || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
    setup_step "npm ci (tests/e2e/js)"
    (cd "$dir" && timeout 600 npm ci --no-audit --no-fund --loglevel=error)
  fi
}
