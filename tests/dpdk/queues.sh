#!/usr/bin/env bash
# A DPDK port with two RX/TX queue pairs (USTACK_CORES=2's device), on net_tap.
#
#   tests/dpdk/queues.sh        (as root; build dir: $USTACK_BUILD, else /work/main/build)
#
# dpdk_port_smoke --queues 2 --hold opens net_tap0 (iface ust0) in a namespace of this run and
# polls each queue on a thread of its own, counting UDP flows by port. net_tap does no RSS (it
# takes the configuration and ignores it): the kernel's tun driver puts each frame on a queue by
# its own flow hash, or on the queue the flow last came from. The kernel side sends 4 datagrams on
# each of 128 flows, 198.18.0.1:7000 -> 198.18.0.2:P; before that, queue 1 sent one datagram on
# each of the 64 flows with P in 21000..21063 (--prime 1). Checked:
#  1. the port opens with 2 queues, each with its own RX interrupt, and no symmetric RSS claimed;
#  2. all 512 datagrams arrive, some on each queue (64 unprimed flows all on one of two queues by
#     a flow hash: probability 2^-63);
#  3. each flow arrives on one queue only.
# Reported, not checked (the kernel's choice, not ustack's): how many primed flows came back on
# queue 1, the queue that sent on them.
set -euo pipefail
SCRIPT=queues.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
trap cleanup EXIT
command -v python3 >/dev/null || skip "python3 not found"
SMOKE="$BUILD/src/dev/dpdk/dpdk_port_smoke"
[[ -x "$SMOKE" ]] || { log "$SMOKE not found (build first, or set USTACK_BUILD)"; exit 1; }

PORT_MAC=02:75:73:74:6b:10  # the DPDK end, fixed so that the kernel needs no ARP for it
FLOWS=128
ROUNDS=4

make_ns

ip netns exec "$NS" "$SMOKE" --dev "net_tap0,iface=ust0,mac=$PORT_MAC" --queues 2 --prime 1 --hold 8 \
  >"$TMP/smoke.log" 2>&1 &
SMOKE_PID=$!
PIDS+=("$SMOKE_PID")
for ((i = 0; i < 300; i++)); do
  grep -q "^holding" "$TMP/smoke.log" && break
  kill -0 "$SMOKE_PID" 2>/dev/null || break
  sleep 0.1
done
grep -q "^holding" "$TMP/smoke.log" || { fail "dpdk_port_smoke did not start holding"; exit 1; }

# 1. Two queues, an interrupt each, no RSS claimed.
if grep -q "queues=2 symmetric_rss=0" "$TMP/smoke.log"; then
  pass "net_tap0 opened with 2 queue pairs, symmetric_rss=0"
else
  fail "want 'queues=2 symmetric_rss=0' in: $(grep '^port' "$TMP/smoke.log")"
fi
if grep -q "rx_interrupts=1 queues=2" "$TMP/smoke.log" && grep -q "queue 1: rx_interrupts=1" "$TMP/smoke.log"; then
  pass "queues 0 and 1 each have an RX interrupt"
else
  fail "an RX interrupt per queue: $(grep 'rx_interrupts' "$TMP/smoke.log" | tr '\n' ' ')"
fi

kernel_side ust0 198.18.0.1/24 "$PROBER_MAC"
ip -n "$NS" neigh replace 198.18.0.2 lladdr "$PORT_MAC" dev ust0 nud permanent

# The trigger for --prime, then (once queue 1 has sent on the primed flows) the flows.
ip netns exec "$NS" python3 -c '
import socket
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"prime", ("198.18.0.2", 7001))'
for ((i = 0; i < 50; i++)); do
  grep -q "^primed" "$TMP/smoke.log" && break
  sleep 0.1
done
grep -q "^primed 64 flows on queue 1" "$TMP/smoke.log" ||
  fail "queue 1 did not prime: $(grep '^primed' "$TMP/smoke.log")"
ip netns exec "$NS" python3 - "$ROUNDS" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.0.1", 7000))
ports = list(range(20000, 20064)) + list(range(21000, 21064))
for _ in range(int(sys.argv[1])):
    for p in ports:
        s.sendto(b"x" * 18, ("198.18.0.2", p))
    time.sleep(0.05)  # well under a queue's 512 descriptors per round
EOF

wait_exit "$SMOKE_PID" 30
[[ $RC -eq 0 ]] || fail "dpdk_port_smoke exited $RC: $(grep -E '^FAIL' "$TMP/smoke.log" | tr '\n' ' ')"

# 2. Every datagram, on both queues.
mapfile -t counts < <(sed -n 's/^queue [01]: [0-9]* frames, \([0-9]*\) datagrams.*/\1/p' "$TMP/smoke.log")
q0=${counts[0]:-} q1=${counts[1]:-}
if [[ -z "${q0:-}" || -z "${q1:-}" ]]; then
  fail "no per-queue counts in the output"
elif ((q0 + q1 != FLOWS * ROUNDS)); then
  fail "received $((q0 + q1)) datagrams (queue 0: $q0, queue 1: $q1), sent $((FLOWS * ROUNDS))"
elif ((q0 == 0 || q1 == 0)); then
  fail "all datagrams on one queue (queue 0: $q0, queue 1: $q1)"
else
  pass "all $((FLOWS * ROUNDS)) datagrams received: $q0 on queue 0, $q1 on queue 1"
fi

# 3. A flow stays on its queue.
split=$(sed -n 's/^flows on more than one queue: \(.*\)/\1/p' "$TMP/smoke.log")
if [[ "$split" == "0 of $FLOWS" ]]; then
  pass "each of the $FLOWS flows came in on one queue only"
else
  fail "flows on more than one queue: ${split:-(none reported)} (want 0 of $FLOWS)"
fi

primed=$(grep '^primed flows received' "$TMP/smoke.log" || echo 'no primed flows reported')
log "net_tap, flows queue 1 sent on first: $primed"
[[ $FAILED == 0 ]] && log "all passed"
exit "$FAILED"
