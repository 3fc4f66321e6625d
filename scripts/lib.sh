# Shared by scripts/demo, scripts/test, bench/ and the test tiers: install what is missing, build,
# create/remove network namespaces, stop processes by PID. Source it; do not run it. (A script
# that sources it may define its own log() afterwards: stop_process calls whichever is defined.)

USTACK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USTACK_BUILD="${USTACK_BUILD:-$USTACK_ROOT/build}"
USTACK_APPS="$USTACK_BUILD/apps"   # the apps (apps/meson.build builds them there)

# Debian packages the build, the tests and the demo use (see README, "Dependencies").
USTACK_PACKAGES=(
  build-essential pkg-config meson ninja-build
  dpdk dpdk-dev libdpdk-dev
  libabsl-dev libtomlplusplus-dev libcli11-dev
  googletest libgtest-dev libbenchmark-dev
  python3-scapy python3-matplotlib iproute2 iputils-ping netcat-openbsd socat nftables tcpdump ethtool curl
)

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

ensure_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "This needs root (packages, network namespaces, TAP devices). Run it with sudo." >&2
    exit 1
  fi
}

ensure_packages() {
  local missing=()
  for p in "${USTACK_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# build [DIR [MESON OPTIONS...]]: configures DIR (default $USTACK_BUILD) once, then builds it.
build() {
  local dir="${1:-$USTACK_BUILD}"
  [ $# -gt 0 ] && shift
  if [ ! -f "$dir/build.ninja" ]; then
    log "configuring $dir $*"
    meson setup "$dir" "$USTACK_ROOT" "$@" >/dev/null
  fi
  log "building $dir"
  ninja -C "$dir" >/dev/null || ninja -C "$dir"
}

# new_netns PREFIX: creates a namespace with a unique name, prints it. Callers remove it with
# del_netns in a trap, so it goes even when they fail.
new_netns() {
  local name="$1-$$-$RANDOM"
  ip netns add "$name"
  ip -n "$name" link set lo up
  echo "$name"
}

del_netns() {
  [ -n "${1:-}" ] && ip netns del "$1" 2>/dev/null || true
}

# wait_for_line FILE PATTERN SECONDS: waits until FILE contains PATTERN.
wait_for_line() {
  local file="$1" pattern="$2" deadline=$((SECONDS + $3))
  until grep -q "$pattern" "$file" 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}

# wait_for_link NETNS IFACE SECONDS: waits until IFACE exists in NETNS (net_tap creates it).
wait_for_link() {
  local deadline=$((SECONDS + $3))
  until ip -n "$1" link show "$2" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}

# stop_process PID [NAME]: stops a process this script started, by its own PID (never by name):
# SIGTERM, then SIGKILL if it still runs after 5 s; reaps it and returns its exit status (0 if it
# had already been reaped). A ustack process that did not exit cleanly leaves its DPDK runtime
# directory /var/run/dpdk/ustack-PID (named after its pid, so ours): removed then. Call it as
# `stop_process "$pid" || status=$?` under `set -e`.
stop_process() {
  local pid=$1 name=${2:-pid $1} status=0 i
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name ignored SIGTERM for 5 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || status=$?
  if ((status != 0)); then rm -rf -- "/var/run/dpdk/ustack-$pid" 2>/dev/null || true; fi
  return $status
}
