#!/usr/bin/env bash
# Builds the container image from the Dockerfile, exactly as written, with buildah
# (--isolation chroot: no container engine needed), prints its size, and checks it end to end
# with the demo (scripts/demo.sh --check --image): the image's gateway, run by podman on the
# host network, logs xmpp.js and Converse.js clients in through to a Prosody on the host,
# answers /healthz and /metrics from inside the container, runs as uid 10001, and stops
# cleanly on SIGTERM.
#
# Usage: scripts/image-check.sh [--local-bases] [--export-binary PATH]
#   --local-bases  make the two base images the Dockerfile names locally first, for machines
#                  that cannot pull from a registry (CI): debian:bookworm-slim is a Debian
#                  bookworm root made by debootstrap (minbase) from Debian's mirror;
#                  rust:1-bookworm is that root plus gcc and libc6-dev from apt, this
#                  machine's Rust toolchain (the active rustup one) laid out as the official
#                  image does (RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo, on
#                  PATH), and this machine's CA bundle (for cargo's downloads). Both are tagged with the names the Dockerfile uses (docker.io/library/…)
#                  and the build never pulls. Without it, the bases come from the registry as
#                  for any user.
#   --export-binary PATH
#                  copy the image's /usr/local/bin/xmpp-ws-gateway to PATH: the release binary
#                  built inside the image, which scripts/test.sh reuses for the demo on the host
#                  instead of compiling the same release build a second time.
#
# Environment: IMAGE (default xmpp-ws-gateway:ci), DEBIAN_MIRROR (default
# http://deb.debian.org/debian), SKIP_APT=1. Needs root (debootstrap, buildah, podman); installs
# buildah, podman, runc and debootstrap from Debian when missing. Uses the demo's fixed ports
# (5222, 5290, 9290, 8290).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
# shellcheck source=scripts/lib/setup.sh
source "$repo/scripts/lib/setup.sh"
die() { setup_die "$@"; }

local_bases=0
export_binary=""
while (($# > 0)); do
  case "$1" in
    --local-bases) local_bases=1 ;;
    --export-binary) export_binary="${2:?--export-binary needs a path}"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see scripts/image-check.sh --help)" ;;
  esac
  shift
done
image="${IMAGE:-xmpp-ws-gateway:ci}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The names the Dockerfile's FROM lines resolve to.
slim_base="docker.io/library/debian:bookworm-slim"
rust_base="docker.io/library/rust:1-bookworm"
started=$SECONDS

[[ "$(id -u)" == 0 ]] || die "run as root (debootstrap, buildah and podman need it here)"
install_debian_packages "${IMAGE_PACKAGES[@]}"
timings=()
phase_started=$SECONDS
phase_done() { timings+=("$1 $((SECONDS - phase_started)) s"); phase_started=$SECONDS; }

work="$(mktemp -d /tmp/xmppgw-image.XXXXXX)"
build_containers=()
cleanup() {
  local ctr
  for ctr in "${build_containers[@]}"; do buildah rm "$ctr" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if ((local_bases)); then
  setup_step "local base image $slim_base: debootstrap --variant=minbase bookworm ($mirror)"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || die "debootstrap failed: $(tail -5 "$work/debootstrap.log")"
  # As the official image: bookworm, its updates and security, in deb822 form; no caches.
  rm -f "$work/rootfs/etc/apt/sources.list"
  cat >"$work/rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  # Slim as the official image is: apt keeps no caches or translations, dpkg installs no
  # documentation, manual pages or translations (copyright files stay), and those already
  # installed are removed.
  cat >"$work/rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
  echo 'Acquire::Languages "none";' >"$work/rootfs/etc/apt/apt.conf.d/docker-no-languages"
  cat >"$work/rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
DPKG
  find "$work/rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$work/rootfs/usr/share/man/"* "$work/rootfs/usr/share/groff/"* "$work/rootfs/usr/share/info/"* \
    "$work/rootfs/usr/share/lintian/"* "$work/rootfs/usr/share/locale/"* \
    "$work/rootfs/var/cache/apt/"*.bin "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  podman rmi --force --ignore "$slim_base" >/dev/null
  tar -C "$work/rootfs" -c . | podman import --change 'CMD ["bash"]' - "$slim_base" >"$work/import.log" 2>&1 \
    || die "podman import failed: $(tail -5 "$work/import.log")"
  rm -rf "$work/rootfs"
  phase_done "debootstrap + import"

  sysroot="$(rustc --print sysroot)"
  toolchain="$(basename "$sysroot")"
  setup_step "local base image $rust_base: $slim_base + gcc, libc6-dev + Rust $(rustc --version | cut -d' ' -f2) ($toolchain)"
  ctr="$(buildah from --pull=never "$slim_base")"
  build_containers+=("$ctr")
  buildah run --isolation chroot "$ctr" -- sh -c 'apt-get update -q >/dev/null \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates gcc libc6-dev >/dev/null \
    && rm -rf /var/lib/apt/lists/*'
  # The build stage downloads crates as cargo on this machine does: with this machine's trust
  # store, which may hold the CA of a TLS-inspecting egress proxy that Debian's bundle lacks.
  # Only this local build base gets it; the final image is built on debian:bookworm-slim.
  buildah copy --quiet "$ctr" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
  dest="/usr/local/rustup/toolchains/$toolchain"
  for part in bin lib libexec; do
    if [[ -d "$sysroot/$part" ]]; then buildah copy --quiet "$ctr" "$sysroot/$part" "$dest/$part" >/dev/null; fi
  done
  buildah run --isolation chroot "$ctr" -- sh -c "mkdir -p /usr/local/cargo/bin \
    && for tool in $dest/bin/*; do ln -s \"\$tool\" /usr/local/cargo/bin/; done"
  buildah config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  podman rmi --force --ignore "$rust_base" >/dev/null
  buildah commit --quiet "$ctr" "$rust_base" >/dev/null
  buildah rm "$ctr" >/dev/null
  build_containers=()
  phase_done "Rust base"
fi

setup_step "buildah bud --isolation chroot -t $image . (the Dockerfile as users build it)"
pull=()
((local_bases == 0)) || pull=(--pull=never)
buildah bud --isolation chroot "${pull[@]}" --layers=false -t "$image" -f Dockerfile . \
  || die "the image build failed"
phase_done "image build"
bytes="$(podman image inspect --format '{{.Size}}' "$image")"
base_bytes="$(podman image inspect --format '{{.Size}}' "$slim_base")"
user="$(podman image inspect --format '{{.Config.User}}' "$image")"
[[ "$user" == 10001 ]] || die "the image's USER is '$user', not 10001"
echo "image $image: $((bytes / 1048576)) MiB ($bytes bytes; base $slim_base $((base_bytes / 1048576)) MiB), user $user"

setup_step "the image checks its own shipped config"
"${PODMAN_RUN[@]}" --rm "$image" --check-config /etc/xmpp-ws-gateway/gateway.toml \
  || die "the image cannot check its own shipped config"

if [[ -n "$export_binary" ]]; then
  ctr="$(buildah from --pull=never "$image")"
  build_containers+=("$ctr")
  mnt="$(buildah mount "$ctr")"
  mkdir -p "$(dirname "$export_binary")"
  cp "$mnt/usr/local/bin/xmpp-ws-gateway" "$export_binary"
  buildah umount "$ctr" >/dev/null
  echo "exported the image's binary ($(($(stat -c %s "$export_binary") / 1048576)) MiB) to $export_binary"
fi

setup_step "scripts/demo.sh --check --image $image"
DEMO_SCREENSHOT="${DEMO_SCREENSHOT:-$repo/target/demo/chat-image.png}" scripts/demo.sh --check --image "$image"
phase_done "demo against the image"

summary="$(printf '%s, ' "${timings[@]}")"
echo "image check: passed in $((SECONDS - started)) s (${summary%, }); image $((bytes / 1048576)) MiB"
