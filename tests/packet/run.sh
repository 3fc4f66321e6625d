#!/usr/bin/env bash
# The packet tier: Scapy sends crafted frames to a target on a link and checks every reply.
#
#   tests/packet/run.sh kernel|ustack [BUILD_DIR] [--tcp]   (as root; BUILD_DIR default:
#                                                           $USTACK_BUILD, else /work/main/build)
#
# Two suites, one app each (ustack takes one process per TAP, so they cannot share a run):
#   default: ARP, ICMP and UDP (test_packets.py) against udp-echo;
#   --tcp:   TCP (test_tcp_packets.py) against epoll-server, a TCP echo server.
# ustack: one namespace; the app runs in it with --stack ustack on net_tap, so the TAP ust0
#         appears there; the namespace's kernel side of ust0 (198.18.0.1/24) is the prober,
#         ustack is 198.18.0.2.
# kernel: the oracle: two namespaces joined by a veth pair; the host under test (198.18.0.2/24)
#         runs the app with --stack kernel (the same app), the prober has 198.18.0.1/24 on its
#         end, also named ust0, so the Python test is the same for both.
# Everything (namespaces, links, the app, temp files) is removed on exit, also on failure. The
# host's own interfaces are never touched: every link is made inside a namespace of this run.
# Exit status: 0 all cases pass, 1 a failure, 77 cannot run here (not root, no Scapy): SKIP.
#
# Environment: USTACK_BUILD (build dir), USTACK_EAL (extra EAL arguments for ustack),
# USTACK_PACKET_ARGS (more arguments for the test program: -v prints every reply frame,
# --only CASE runs one case, --seed N repeats a run), USTACK_PACKET_VERBOSE=1 (print the app's
# output, with ustack's counters, also when everything passes).
set -euo pipefail

TARGET=${1:-}
BUILD=${USTACK_BUILD:-/work/main/build}
SUITE=udp
for arg in "${@:2}"; do
  case "$arg" in
    --tcp) SUITE=tcp ;;
    -*) echo "usage: $0 kernel|ustack [BUILD_DIR] [--tcp]" >&2; exit 2 ;;
    *) BUILD=$arg ;;
  esac
done
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# stop_process (stops a process of ours by its PID); log is redefined below.
source "$HERE/../../scripts/lib.sh"
PY=/usr/bin/python3            # Debian's python3, the one with python3-scapy
PORT=7777
TARGET_IP=198.18.0.2
PROBER_IP=198.18.0.1
PREFIX=24
PROBER_MAC=02:75:73:74:6b:01   # locally administered; used inside this run's namespace only
TARGET_MAC=""

case "$TARGET" in
  kernel | ustack) ;;
  *) echo "usage: $0 kernel|ustack [BUILD_DIR] [--tcp]" >&2; exit 2 ;;
esac
# Exit status 77 is SKIP for meson test: this tier cannot run here at all. scripts/test installs
# everything this needs and sets USTACK_REQUIRE_ALL_TIERS=1, so there a missing piece is a failure.
SKIP=77
[[ "${USTACK_REQUIRE_ALL_TIERS:-0}" == 1 ]] && SKIP=1
if [[ $(id -u) -ne 0 ]]; then echo "run.sh: SKIP: needs root (namespaces, TAP, raw sockets)" >&2; exit $SKIP; fi
if ! "$PY" -c 'import scapy.all' 2>/dev/null; then echo "run.sh: SKIP: $PY has no scapy (apt install python3-scapy)" >&2; exit $SKIP; fi
for tool in ip nft ethtool; do
  command -v "$tool" >/dev/null || { echo "run.sh: SKIP: $tool not found" >&2; exit $SKIP; }
done
if [[ "$SUITE" == tcp ]]; then
  APP_NAME=epoll-server
  TEST_PY=test_tcp_packets.py
  SUITE_ARGS_TAG=" --tcp"
else
  APP_NAME=udp-echo
  TEST_PY=test_packets.py
fi
APP="$BUILD/apps/$APP_NAME"
if [[ ! -x "$APP" ]]; then echo "run.sh: $APP not found (build first, or pass the build dir)" >&2; exit 1; fi

RUN_ID="$$-$RANDOM"
PROBER_NS="ustk-pkt-$RUN_ID"
HOST_NS=""                     # kernel target only: the host under test
APP_PID=""
TEST_PID=""
TMP=$(mktemp -d /tmp/ustk-pkt.XXXXXX)
APP_LOG="$TMP/app.log"

log() { echo "run.sh[$TARGET${SUITE_ARGS_TAG:-}]: $*" >&2; }

# Stops the app by its own PID (stop_process: SIGTERM, then SIGKILL after 5 s; the runtime
# directory of a ustack app that did not exit cleanly removed). Sets APP_STATUS.
APP_STATUS=""
stop_app() {
  [[ -n "$APP_PID" ]] || return 0
  local pid=$APP_PID
  APP_PID=""
  APP_STATUS=0
  stop_process "$pid" "$APP_NAME (pid $pid)" || APP_STATUS=$?
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$TEST_PID" ]]; then stop_process "$TEST_PID" || true; fi
  stop_app
  if [[ -s "$APP_LOG" && ( $rc -ne 0 || -n "${USTACK_PACKET_VERBOSE:-}" ) ]]; then
    log "$APP_NAME output:"
    sed 's/^/    /' "$APP_LOG" >&2
  fi
  for ns in "$PROBER_NS" "$HOST_NS"; do
    [[ -n "$ns" ]] && ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
mac_of() { ip -n "$1" -o link show "$2" | sed -n 's|.*link/ether \([0-9a-f:]*\).*|\1|p'; }

# A quiet namespace: loopback up, no IPv6 (no router solicitations or MLD on the test link).
make_ns() {
  ip netns add "$1"
  ip -n "$1" link set lo up
  in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# Waits (up to $2 seconds) for the app's "serving" line; fails if it exits first.
wait_serving() {
  local timeout=$1 i
  for ((i = 0; i < timeout * 10; i++)); do
    if grep -q "$APP_NAME: serving" "$APP_LOG" 2>/dev/null; then return 0; fi
    if ! kill -0 "$APP_PID" 2>/dev/null; then log "$APP_NAME exited before serving"; return 1; fi
    sleep 0.1
  done
  log "$APP_NAME did not say it is serving within ${timeout}s"
  return 1
}

# APP_PID must be the app itself (ip netns exec and env exec it), not a shell around it: it is the
# process that is signalled at the end and whose telemetry socket is read.
check_app_pid() {
  local exe
  exe=$(readlink "/proc/$APP_PID/exe" 2>/dev/null || true)
  if [[ "$exe" != */"$APP_NAME" ]]; then log "pid $APP_PID is '$exe', not $APP_NAME"; return 1; fi
}

make_ns "$PROBER_NS"

if [[ "$TARGET" == ustack ]]; then
  # ustack creates the TAP ust0 inside the namespace; its kernel side is the prober.
  ip netns exec "$PROBER_NS" env USTACK_DEV=net_tap0,iface=ust0 USTACK_EAL="${USTACK_EAL:-}" \
    USTACK_IP="$TARGET_IP/$PREFIX" USTACK_PCAP="$TMP/capture.pcapng" "$APP" --stack ustack --port "$PORT" --stats >"$APP_LOG" 2>&1 &
  APP_PID=$!
  wait_serving 30
  check_app_pid
  for _ in $(seq 100); do ip -n "$PROBER_NS" link show ust0 >/dev/null 2>&1 && break; sleep 0.1; done
  ip -n "$PROBER_NS" link show ust0 >/dev/null 2>&1 || { log "TAP ust0 did not appear in $PROBER_NS"; exit 1; }
  # net_tap gives the kernel side of the TAP the DPDK port's own MAC, so ustack and the prober
  # would share one MAC on the link. Give the prober a MAC of its own, as on a real wire: then
  # every check on "whose MAC" means something. ustack's MAC is the one the TAP had.
  TARGET_MAC=$(mac_of "$PROBER_NS" ust0)
  ip -n "$PROBER_NS" link set ust0 address "$PROBER_MAC"
  ip -n "$PROBER_NS" addr add "$PROBER_IP/$PREFIX" dev ust0
  ip -n "$PROBER_NS" link set ust0 up
  COUNTERS="$PY $HERE/../../scripts/ustack-stats $APP_PID"
  # ustack's MTU: USTACK_MTU, else the device's (the TAP's).
  MTU=${USTACK_MTU:-$(ip -n "$PROBER_NS" -o link show ust0 | sed -n 's/.* mtu \([0-9]*\).*/\1/p')}
else
  HOST_NS="$PROBER_NS-h"
  make_ns "$HOST_NS"
  # Both ends are made inside the namespaces: the host's namespace never sees them.
  ip -n "$PROBER_NS" link add ust0 type veth peer name ust0h netns "$HOST_NS"
  ip -n "$HOST_NS" addr add "$TARGET_IP/$PREFIX" dev ust0h
  ip -n "$HOST_NS" link set ust0h up
  # veth hands its peer UDP/ICMP with the checksum left to "offload" (CHECKSUM_PARTIAL); a packet
  # socket on the prober's end would see it unfilled. A real wire carries it filled in. Likewise
  # TCP: segmented by the host (no TSO/GSO super-frames across the veth), so the prober sees the
  # segments a wire would carry.
  in_ns "$HOST_NS" ethtool -K ust0h tx off tso off gso off >/dev/null
  TARGET_MAC=$(mac_of "$HOST_NS" ust0h)
  ip -n "$PROBER_NS" addr add "$PROBER_IP/$PREFIX" dev ust0
  ip -n "$PROBER_NS" link set ust0 up
  ip netns exec "$HOST_NS" "$APP" --stack kernel --port "$PORT" >"$APP_LOG" 2>&1 &
  APP_PID=$!   # started directly (not through in_ns, a function: that would fork a subshell)
  wait_serving 10
  check_app_pid
  COUNTERS="$PY $HERE/kernel_counters.py $HOST_NS"
  MTU=$(ip -n "$HOST_NS" -o link show ust0h | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
fi

# The prober's own kernel sees the replies too: the UDP echoes arrive at ports where nothing
# listens, and it would answer each with an ICMP port unreachable; the target's TCP segments
# belong to connections Scapy owns and the kernel knows nothing of, and it would answer each with
# a RST that tears the connection down. Keep it quiet (Scapy's own frames, RSTs included, go out
# through a packet socket, which this hook does not see). Only in this run's prober namespace.
in_ns "$PROBER_NS" nft -f - <<'EOF'
table inet ustk_packet {
  chain output {
    type filter hook output priority 0; policy accept;
    icmp type destination-unreachable drop
    tcp flags & rst == rst drop
  }
}
EOF

log "prober netns $PROBER_NS${HOST_NS:+, host netns $HOST_NS}, $APP_NAME pid $APP_PID, target MAC $TARGET_MAC, MTU $MTU"
SUITE_ARGS=()
[[ "$SUITE" == tcp ]] && SUITE_ARGS=(--mtu "$MTU")
rc=0
# In the background, waited for: a signal to this script then runs the traps at once (not after
# the test), and cleanup stops the test too (timeout passes the SIGTERM on to python).
ip netns exec "$PROBER_NS" timeout 120 "$PY" "$HERE/$TEST_PY" --iface ust0 --target-ip "$TARGET_IP" \
  --port "$PORT" --counters "$COUNTERS" --names "$TARGET" --target-mac "$TARGET_MAC" "${SUITE_ARGS[@]}" \
  ${USTACK_PACKET_ARGS:-} &
TEST_PID=$!
wait "$TEST_PID" || rc=$?
TEST_PID=""

# The target must still be alive after all that, and exit cleanly when asked.
if ! kill -0 "$APP_PID" 2>/dev/null; then
  log "FAIL: $APP_NAME is no longer running after the tests"
  rc=1
elif [[ "$TARGET" == ustack ]]; then
  # An idle engine naps instead of spinning a core (it spins 200 us after the last frame, then
  # sleeps in an RX-interrupt wait). Measured: ~2% of a core idle, 100% if it never napped.
  ticks() { awk '{print $14 + $15}' "/proc/$APP_PID/stat"; }
  sleep 0.5
  t0=$(ticks); sleep 2; t1=$(ticks)
  idle_pct=$(( (t1 - t0) * 100 / $(getconf CLK_TCK) / 2 ))
  if (( idle_pct > 50 )); then
    log "FAIL: the idle ustack engine used ${idle_pct}% of a core (want it to nap: < 50%)"
    rc=1
  else
    log "PASS idle engine CPU ${idle_pct}% of a core"
  fi
fi
stop_app
if [[ "$APP_STATUS" != 0 ]]; then
  log "FAIL: $APP_NAME exited with status $APP_STATUS on SIGTERM (want 0)"
  rc=1
fi
if [[ "$TARGET" == ustack ]]; then
  # USTACK_PCAP: every frame both ways, readable by tcpdump.
  capture=$(tcpdump -nr "$TMP/capture.pcapng" 2>/dev/null || true)
  if [[ "$SUITE" == tcp ]]; then
    want="a SYN and ustack's SYN/ACK"
    grep -q "> $TARGET_IP.$PORT: Flags \[S\]," <<<"$capture" && grep -q " $TARGET_IP.$PORT > .*Flags \[S\.\]," <<<"$capture"
  else
    want="the ARP reply or the echo request/reply"
    grep -q "ARP, Reply $TARGET_IP is-at" <<<"$capture" && grep -q "ICMP echo request" <<<"$capture" &&
      grep -q "ICMP echo reply" <<<"$capture"
  fi && found=1 || found=0
  if ((found)); then
    log "PASS USTACK_PCAP capture: $(wc -l <<<"$capture") frames readable by tcpdump"
  else
    log "FAIL: USTACK_PCAP capture lacks $want (tcpdump -r read $(wc -l <<<"$capture") lines)"
    rc=1
  fi
fi
exit "$rc"
