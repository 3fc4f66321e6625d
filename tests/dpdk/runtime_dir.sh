#!/usr/bin/env bash
# DPDK runtime directories (/var/run/dpdk/ustack-<pid>) do not pile up.
#
#   tests/dpdk/runtime_dir.sh          (as root; build dir: $USTACK_BUILD, else /work/main/build)
#
#  1. A process killed by SIGKILL leaves its runtime directory (nothing in it can help that), and
#     a fake stale one, ustack-<a pid no process has> holding a DPDK-named dummy file, sits next
#     to it. The next ustack start removes both. It keeps what is not provably stale and DPDK's:
#     ustack-<pid> of a live process, ustack-<dead pid> holding a file DPDK does not make, and a
#     name that is not exactly ustack-<digits>.
#  2. A clean start and stop (SIGTERM) leaves no directory of its own.
#  3. A failed EAL start (USTACK_DEV=garbage) leaves no directory of its own either.
set -euo pipefail
SCRIPT=runtime_dir.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
trap cleanup EXIT

make_ns
mkdir -p "$DPDK_RUN"

# 1. A real leftover: udp-echo killed by SIGKILL.
start_app killed USTACK_IP=198.18.0.2/24
KILLED=$APP_PID
wait_serving killed "$KILLED"
kill -KILL "$KILLED"
RC=0
wait "$KILLED" 2>/dev/null || RC=$?
forget_pid "$KILLED"
KILLED_DIR="$DPDK_RUN/ustack-$KILLED"
CLEANUP_PATHS+=("$KILLED_DIR")
if [[ -d "$KILLED_DIR" ]]; then
  pass "udp-echo killed by SIGKILL (exit $RC) left $KILLED_DIR ($(du -sh "$KILLED_DIR" | cut -f1))"
else
  log "note: the killed udp-echo left no $KILLED_DIR (nothing to sweep from it)"
fi

# A fake stale one, and what must be kept.
STALE="$DPDK_RUN/ustack-$(unused_pid)"
CLEANUP_PATHS+=("$STALE")
mkdir "$STALE"
echo "dummy" >"$STALE/config"
sleep 600 &   # a live process of ours that "owns" a directory
LIVE=$!
PIDS+=("$LIVE")
KEEP_LIVE="$DPDK_RUN/ustack-$LIVE"
KEEP_FOREIGN="$DPDK_RUN/ustack-$(unused_pid $((${STALE##*-} - 1)))"
KEEP_NAME="$DPDK_RUN/ustack-$(unused_pid)x"
for d in "$KEEP_LIVE" "$KEEP_FOREIGN" "$KEEP_NAME"; do
  CLEANUP_PATHS+=("$d")
  mkdir "$d"
  echo "dummy" >"$d/config"
done
echo "not DPDK's" >"$KEEP_FOREIGN/notes.txt"

# The next start sweeps; 2. and its clean stop leaves nothing of its own.
start_app clean USTACK_IP=198.18.0.2/24
CLEAN=$APP_PID
wait_serving clean "$CLEAN"
for d in "$STALE" "$KILLED_DIR"; do
  if [[ -e "$d" ]]; then fail "the next start left the stale $d"; else pass "the next start removed the stale $d"; fi
done
for d in "$KEEP_LIVE" "$KEEP_FOREIGN" "$KEEP_NAME"; do
  if [[ -d "$d" ]]; then pass "kept $d"; else fail "removed $d (not provably stale, or not only DPDK's files)"; fi
done
[[ -d "$DPDK_RUN/ustack-$CLEAN" ]] || fail "the running udp-echo has no $DPDK_RUN/ustack-$CLEAN"
stop_pid "$CLEAN"
if [[ $RC -ne 0 ]]; then fail "udp-echo exited $RC on SIGTERM (want 0)"; fi
if [[ -e "$DPDK_RUN/ustack-$CLEAN" ]]; then
  fail "udp-echo (pid $CLEAN) stopped cleanly but left $DPDK_RUN/ustack-$CLEAN: $(ls "$DPDK_RUN/ustack-$CLEAN")"
else
  pass "a clean stop left no $DPDK_RUN/ustack-$CLEAN"
fi

# 3. A failed EAL start.
start_app garbage USTACK_DEV=garbage
GARBAGE=$APP_PID
CLEANUP_PATHS+=("$DPDK_RUN/ustack-$GARBAGE")
wait_exit "$GARBAGE" 30
if [[ $RC -eq 0 ]]; then
  fail "udp-echo with USTACK_DEV=garbage exited 0"
elif ! grep -q "DPDK EAL did not start" "$TMP/garbage.log"; then
  fail "udp-echo with USTACK_DEV=garbage exited $RC, but not because EAL did not start"
elif [[ -e "$DPDK_RUN/ustack-$GARBAGE" ]]; then
  fail "the failed EAL start left $DPDK_RUN/ustack-$GARBAGE: $(ls -A "$DPDK_RUN/ustack-$GARBAGE")"
else
  pass "a failed EAL start (USTACK_DEV=garbage, exit $RC) left no $DPDK_RUN/ustack-$GARBAGE"
fi

[[ $FAILED == 0 ]] && log "all passed"
exit "$FAILED"
