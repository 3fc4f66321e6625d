# What the kernel-vs-ustack bench scripts (tcp-compare, servers-compare, suite) share: where the
# server and the client run (pinning, nice level), the SCHED_IDLE spinners that keep the vCPUs
# awake, their namespaces, and the kernel end of a ustack server's TAP. Source it after
# scripts/lib.sh; do not run it. Environment (the same for every script):
#   USTACK_BENCH_PIN=split|same|none  split (default): server on core 1, client on core 0; same:
#                                     both on core 1; none: the scheduler places them
#   USTACK_BENCH_NICE=-10             run server and client at that nice level (a busy machine)
#   USTACK_BENCH_AWAKE=0              no SCHED_IDLE spinners (see bench_start_spinners)

PY=/usr/bin/python3  # Debian's python3 (python3-matplotlib for the plots)

# bench_pinning: sets PIN_SERVER and PIN_CLIENT (command prefixes: taskset, nice) and PINNING (a
# description for the output) from USTACK_BENCH_PIN and USTACK_BENCH_NICE. DPDK's EAL takes its
# core from that affinity. With fewer than 2 cores nothing is pinned.
bench_pinning() {
  local pin="${USTACK_BENCH_PIN:-split}"
  (($(nproc) >= 2)) || pin=none
  case "$pin" in
    split) PIN_SERVER=(taskset -c 1); PIN_CLIENT=(taskset -c 0); PINNING="server on core 1, client on core 0" ;;
    same) PIN_SERVER=(taskset -c 1); PIN_CLIENT=(taskset -c 1); PINNING="server and client on core 1" ;;
    none) PIN_SERVER=(); PIN_CLIENT=(); PINNING="none" ;;
    *) echo "USTACK_BENCH_PIN: split, same or none" >&2; exit 2 ;;
  esac
  # USTACK_BENCH_NICE=-10: other work on a busy machine (a build) disturbs the figures less. Off by
  # default; the JSON records it (in PINNING).
  local nice="${USTACK_BENCH_NICE:-0}"
  if [ "$nice" != 0 ]; then
    PIN_SERVER=(nice -n "$nice" "${PIN_SERVER[@]}"); PIN_CLIENT=(nice -n "$nice" "${PIN_CLIENT[@]}")
    PINNING="$PINNING, nice $nice"
  fi
}

# bench_start_spinners: with USTACK_BENCH_AWAKE=1 (default), a SCHED_IDLE busy loop on every core
# while the bench runs (their PIDs in SPINNERS, for bench_cleanup). It gets a core only when nothing
# else wants it, but keeps the (virtual) CPU from halting: in a VM waking a halted vCPU costs from
# ~100 us to a scheduler tick, which otherwise dominates every cross-core wake-up (request/response
# on split cores) and makes figures vary 3-5x run to run. Each ends by itself when the script is
# gone (or after an hour), whatever killed the script.
SPINNERS=()
bench_start_spinners() {
  [ "${USTACK_BENCH_AWAKE:-1}" = 1 ] || return 0
  local cpu
  for ((cpu = 0; cpu < $(nproc); cpu++)); do
    taskset -c "$cpu" chrt --idle 0 "$PY" -c 'import os, time
parent, end = os.getppid(), time.monotonic() + 3600
while os.getppid() == parent and time.monotonic() < end: pass' </dev/null >/dev/null 2>&1 &
    SPINNERS+=("$!")
  done
  PINNING="$PINNING; SCHED_IDLE spinners keep the CPUs awake"
}

# make_ns VAR PREFIX: a quiet namespace (no IPv6) whose kernel may open many short connections (a
# wide ephemeral port range and TIME-WAIT reuse, both per namespace, so that seconds of cps do not
# run out of ports), its name in VAR. Not in a subshell: the name must reach NAMESPACES, which
# bench_cleanup removes.
NAMESPACES=()
make_ns() {
  local -n var=$1
  var="$(new_netns "$2")"
  NAMESPACES+=("$var")
  ip netns exec "$var" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
    net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1
}

# bench_cleanup: stops the spinners and removes the namespaces. Call it from the script's EXIT trap
# (after stopping its own servers); it never fails.
bench_cleanup() {
  local pid ns
  for pid in "${SPINNERS[@]}"; do stop_process "$pid" spinner || true; done
  SPINNERS=()
  for ns in "${NAMESPACES[@]}"; do del_netns "$ns"; done
  NAMESPACES=()
}

# The TAP that a ustack server on net_tap (TAP_ENV) has just made in a namespace: setup_tap NS
# gives the kernel's end 198.18.0.1 (ustack is 198.18.0.2) and a MAC of its own (DPDK 22.11's
# net_tap gives both ends the same one), and resolves ARP both ways before any timing. Returns 1
# if the TAP did not appear.
TAP_ENV=("USTACK_DEV=net_tap0,iface=ust0" USTACK_IP=198.18.0.2/24)
setup_tap() {
  local ns=$1
  wait_for_link "$ns" ust0 5 || { echo "  the TAP did not appear" >&2; return 1; }
  ip -n "$ns" link set ust0 address 02:75:73:74:6b:01
  ip -n "$ns" addr add 198.18.0.1/24 dev ust0
  ip -n "$ns" link set ust0 up
  timeout 5 ip netns exec "$ns" ping -c 1 -W 2 198.18.0.2 >/dev/null || true
}

# veth_pair NS_CLIENT NS_SERVER: joins two namespaces by a veth pair, 198.18.1.1 (client, ust0)
# and 198.18.1.2 (server, ust1), and resolves ARP.
veth_pair() {
  ip link add ust0 netns "$1" type veth peer name ust1 netns "$2"
  ip -n "$1" addr add 198.18.1.1/24 dev ust0 && ip -n "$1" link set ust0 up
  ip -n "$2" addr add 198.18.1.2/24 dev ust1 && ip -n "$2" link set ust1 up
  timeout 5 ip netns exec "$1" ping -c 1 -W 2 198.18.1.2 >/dev/null || true
}
