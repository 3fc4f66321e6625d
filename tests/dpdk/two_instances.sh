#!/usr/bin/env bash
# Two ustack processes in one network namespace.
#
#   tests/dpdk/two_instances.sh        (as root; build dir: $USTACK_BUILD, else /work/main/build)
#
# net_tap opens its TAP as one more queue of an existing interface of the same name, so a second
# process with the default USTACK_DEV (net_tap0,iface=ust0) would silently share the first one's
# TAP, each getting part of the flows. ustack refuses that at start. Checked here:
#  1. the first udp-echo --stack ustack (default USTACK_DEV) serves;
#  2. a second with the default USTACK_DEV exits non-zero, saying the interface exists and what
#     to do, before EAL starts (no runtime directory left);
#  3. one with USTACK_DEV=net_tap0,iface=ust1 (198.18.1.2/24) serves;
#  4. both answer pings from the namespace's kernel, each on its own TAP (ust0: 198.18.0.1/24 ->
#     198.18.0.2, ust1: 198.18.1.1/24 -> 198.18.1.2), and both stop cleanly on SIGTERM.
set -euo pipefail
SCRIPT=two_instances.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
trap cleanup EXIT
command -v ping >/dev/null || skip "ping not found"

make_ns

# 1. The first, with the default device.
start_app first USTACK_IP=198.18.0.2/24
FIRST=$APP_PID
wait_serving first "$FIRST"
ip -n "$NS" link show ust0 >/dev/null 2>&1 || { fail "the first process made no ust0"; exit 1; }
pass "first udp-echo (pid $FIRST) serves on the default USTACK_DEV, ust0"

# 2. A second with the same default device must refuse.
start_app second USTACK_IP=198.18.0.3/24
SECOND=$APP_PID
wait_exit "$SECOND" 30
want="USTACK_DEV: interface ust0 already exists in this network namespace (another ustack process, or a leftover?): give each process its own, e.g. USTACK_DEV=net_tap0,iface=ust1"
if [[ $RC -eq 0 ]]; then
  fail "the second udp-echo on ust0 exited 0 (want non-zero)"
elif ! grep -qF "$want" "$TMP/second.log"; then
  fail "the second udp-echo on ust0 exited $RC without the message: $want"
else
  pass "second udp-echo on ust0 refused (exit $RC): $(grep -F 'USTACK_DEV:' "$TMP/second.log")"
fi
if [[ -e "$DPDK_RUN/ustack-$SECOND" ]]; then
  fail "the refused process left $DPDK_RUN/ustack-$SECOND (it should stop before EAL)"
  rm -rf -- "${DPDK_RUN:?}/ustack-$SECOND"
fi
if ! kill -0 "$FIRST" 2>/dev/null; then fail "the first udp-echo died when the second was refused"; fi

# 3. One with an interface of its own.
start_app third USTACK_DEV=net_tap0,iface=ust1 USTACK_IP=198.18.1.2/24
THIRD=$APP_PID
wait_serving third "$THIRD"
pass "udp-echo with USTACK_DEV=net_tap0,iface=ust1 (pid $THIRD) serves"

# 4. Each answers on its own TAP.
kernel_side ust0 198.18.0.1/24 "$PROBER_MAC"
kernel_side ust1 198.18.1.1/24 "$PROBER_MAC1"
for target in 198.18.0.2 198.18.1.2; do
  if out=$(ip netns exec "$NS" ping -c 3 -i 0.2 -W 2 "$target" 2>&1); then
    pass "ping $target: $(grep -o '[0-9]* received' <<<"$out")"
  else
    fail "no ping reply from $target: $(tail -2 <<<"$out" | tr '\n' ' ')"
  fi
done

for pid in "$FIRST" "$THIRD"; do
  stop_pid "$pid"
  if [[ $RC -ne 0 ]]; then fail "udp-echo pid $pid exited $RC on SIGTERM (want 0)"; fi
  if [[ -e "$DPDK_RUN/ustack-$pid" ]]; then fail "udp-echo pid $pid left $DPDK_RUN/ustack-$pid"; fi
done

[[ $FAILED == 0 ]] && log "all passed"
exit "$FAILED"
