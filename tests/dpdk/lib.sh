# shellcheck shell=bash disable=SC2034  # (variables here are used by the scripts that source it)
# Shared by the tests/dpdk scripts (sourced, not run): a namespace of this run, udp-echo
# processes started in it and tracked by PID, and a cleanup that removes all of it.
#
# A script sets SCRIPT (its name for messages), sources this file, then `trap cleanup EXIT`.
# Everything made here is removed on exit, also on failure: the namespace (with the TAPs ustack
# made in it), the temp directory, the processes (by their own PIDs), the runtime directories of
# those of them that did not exit cleanly, and whatever the script lists in CLEANUP_PATHS.
# The host's own interfaces are never touched. Exit status: 0 pass, 1 fail, 77 cannot run here
# (SKIP for meson test; 1 instead when USTACK_REQUIRE_ALL_TIERS=1, as scripts/test sets).

BUILD=${USTACK_BUILD:-/work/main/build}
# stop_process (stops a process of ours by its PID); log is redefined below.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
APP="$BUILD/apps/udp-echo"
CLIENT="$BUILD/apps/udp-client"
DPDK_RUN=/var/run/dpdk         # DPDK's runtime directories, as root
PROBER_MAC=02:75:73:74:6b:01   # the kernel end of ust0 gets a MAC of its own (net_tap gives it ours)
PROBER_MAC1=02:75:73:74:6b:02  # ... and of ust1

SKIP=77
[[ "${USTACK_REQUIRE_ALL_TIERS:-0}" == 1 ]] && SKIP=1

log() { echo "$SCRIPT: $*" >&2; }
FAILED=0
pass() { log "PASS $*"; }
fail() { log "FAIL: $*"; FAILED=1; }
skip() { log "SKIP: $*"; exit "$SKIP"; }

[[ $(id -u) -eq 0 ]] || skip "needs root (namespaces, TAP, /var/run/dpdk)"
command -v ip >/dev/null || skip "ip not found"
[[ -x "$APP" ]] || { log "$APP not found (build first, or set USTACK_BUILD)"; exit 1; }

# The configuration is what each test sets, nothing inherited (USTACK_EAL passes through).
while read -r var; do
  case "$var" in USTACK_BUILD | USTACK_EAL | USTACK_REQUIRE_ALL_TIERS) ;; *) unset "$var" ;; esac
done < <(compgen -e | grep '^USTACK_' || true)

RUN_ID="$$-$RANDOM"
NS="ustk-dpdk-$RUN_ID"
NS_MADE=0
TMP=$(mktemp -d /tmp/ustk-dpdk.XXXXXX)
PIDS=()            # every process started here (udp-echo PIDs: ip netns exec and env exec it)
CLEANUP_PATHS=()   # more to remove at exit (rm -rf)
CLEANUP_HOOK=""    # a function to run first at exit, if set

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$CLEANUP_HOOK" ]]; then "$CLEANUP_HOOK" || true; fi
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid" || true; done
  if [[ $rc -ne 0 || -n "${USTACK_DPDK_VERBOSE:-}" ]]; then
    for f in "$TMP"/*.log; do
      [[ -s "$f" ]] || continue
      log "--- $(basename "$f")"
      sed 's/^/    /' "$f" >&2
    done
  fi
  if [[ $NS_MADE == 1 ]]; then ip netns del "$NS" 2>/dev/null || true; fi
  local p
  for p in "${CLEANUP_PATHS[@]}"; do rm -rf -- "$p"; done
  rm -rf -- "$TMP"
  exit "$rc"
}
trap 'exit 130' INT
trap 'exit 143' TERM

# A quiet namespace: loopback up, no IPv6.
make_ns() {
  ip netns add "$NS"
  NS_MADE=1
  ip -n "$NS" link set lo up
  ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# start_app NAME [VAR=VALUE...] [-- APP_ARGS...]: udp-echo --stack ustack in the namespace, output
# in $TMP/NAME.log; sets APP_PID (udp-echo itself: ip netns exec and env exec it).
start_app() {
  local name=$1
  shift
  local envs=() args=()
  while [[ $# -gt 0 && "$1" != -- ]]; do envs+=("$1"); shift; done
  [[ "${1:-}" == -- ]] && shift
  args=("$@")
  ip netns exec "$NS" env "${envs[@]}" "$APP" --stack ustack "${args[@]}" >"$TMP/$name.log" 2>&1 &
  APP_PID=$!
  PIDS+=("$APP_PID")
}

# wait_serving NAME PID [SECONDS]: until udp-echo says "serving"; fails if it exits first.
wait_serving() {
  local name=$1 pid=$2 timeout=${3:-30} i
  for ((i = 0; i < timeout * 10; i++)); do
    grep -q "udp-echo: serving" "$TMP/$name.log" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { log "$name (pid $pid) exited before serving"; return 1; }
    sleep 0.1
  done
  log "$name (pid $pid) did not say it is serving within ${timeout}s"
  return 1
}

# wait_exit PID [SECONDS]: waits for a process of ours that should stop by itself (SIGKILL after
# SECONDS); its exit status goes to RC. (Not in $(...): a subshell cannot wait for our children.)
RC=""
wait_exit() {
  local pid=$1 timeout=${2:-30} i
  for ((i = 0; i < timeout * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid still runs after ${timeout}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  RC=0
  wait "$pid" 2>/dev/null || RC=$?
  forget_pid "$pid"
}

# stop_pid PID: stop_process (scripts/lib.sh: SIGTERM, SIGKILL after 5 s, the runtime directory
# of a process that did not exit cleanly removed), then forgets PID; the exit status goes to RC.
stop_pid() {
  RC=0
  stop_process "$1" || RC=$?
  forget_pid "$1"
}

forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# The kernel end of a TAP that ustack made in the namespace: a MAC of its own, an address, up.
kernel_side() {
  local iface=$1 addr=$2 mac=$3 i
  for ((i = 0; i < 100; i++)); do ip -n "$NS" link show "$iface" >/dev/null 2>&1 && break; sleep 0.1; done
  ip -n "$NS" link set "$iface" address "$mac"
  ip -n "$NS" addr add "$addr" dev "$iface"
  ip -n "$NS" link set "$iface" up
}

# unused_pid [FROM]: a PID that no process has now, counting down from FROM (default pid_max - 1).
unused_pid() {
  local p=${1:-$(($(cat /proc/sys/kernel/pid_max) - 1))}
  while [[ -e /proc/$p ]]; do p=$((p - 1)); done
  echo "$p"
}
