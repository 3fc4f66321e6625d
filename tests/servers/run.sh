#!/usr/bin/env bash
# The servers tier: every server design under the same workload from real Linux clients, on one
# backend; every byte checked, then "still serving?", "leaks nothing?" and "stops cleanly?".
#
#   tests/servers/run.sh BUILD_DIR kernel|ustack [DESIGN...]   (as root; the apps are in
#                                                               BUILD_DIR/apps)
#
# DESIGN: iterative-server thread-server pool-server fork-server epoll-server epoll-et-server
# reuseport-server select-server poll-server udp-echo file-server unix-echo (default: all; the
# "-server" may be left out). For each one:
#   1. start it: ustack: in namespace A with --stack ustack on net_tap (ustack 198.18.0.2/24; the
#      namespace's kernel end of ust0, 198.18.0.1/24, runs the clients); kernel: --stack kernel in
#      namespace S (198.18.1.2/24), the clients in namespace C (198.18.1.1/24), joined by a veth.
#   2. the workload, from the kernel side:
#      TCP echo servers: loadgen --mode mixed: 200 clients, 20 at once, 100 requests each of
#        1 B to 64 KiB (log-uniform, seeded), every echoed byte checked;
#      udp-echo: udp-client in its mixed mode (--clients), the same shape (datagrams up to
#        65507 B; a lost datagram is sent again);
#      file-server, once per --io mode (sendfile, readwrite): 200 fetches, 20 at once (one curl
#        --parallel), of
#        random files of 0 B, 1 B, 1000 B, 64 KiB, 1 MiB and 10 MiB, each body compared with its
#        file byte for byte;
#      unix-echo: loadgen --unix (AF_UNIX, the kernel's on both backends).
#   3. still serving: a short second run (10 clients of 10 requests; 6 fetches).
#   4. no leak once the clients are gone (polled for up to 10 s: a server closes after its
#      client's FIN): the socket descriptors in /proc/PID/fd back to their count before the
#      workload; on ustack also the gauges api.open_descriptors back to its value before and
#      tcp.connections to 0 (scripts/ustack-stats; TIME-WAIT left by a server that closes first,
#      as file-server does, is not a leak: subtracted when the stats report tcp.time_wait, and
#      until they do tcp.connections is not checked for file-server).
#   5. SIGTERM: the server must exit 0 (within 5 s).
# fork-server on ustack must refuse to start (exit status 3, a message naming fork): that is its
# documented behaviour, reported as "refused (documented)".
# On ustack, reuseport-server and epoll-server run a second time with USTACK_CORES=2 (two engines
# on two queues of the TAP): "(2 engines)" in the table. epoll-server listens once, on one engine,
# which must get every connection whichever queue it came on; reuseport-server listens on both.
# A summary table (design, backend, result, seconds, requests/s) is printed at the end.
#
# Everything (namespaces, TAPs, processes, temp files) is removed on exit, also on failure; the
# host's own interfaces are never touched. Addresses only in 198.18.0.0/15. Every command has a
# time limit. Exit status: 0 all designs pass, 1 a failure, 2 bad arguments, 77 cannot run here
# (not root): SKIP (1 instead when USTACK_REQUIRE_ALL_TIERS=1, as scripts/test sets).
#
# Environment: USTACK_EAL (extra EAL arguments for ustack); the workload's size:
# USTACK_SERVERS_CLIENTS (200), USTACK_SERVERS_CONCURRENCY (20), USTACK_SERVERS_REQUESTS (100),
# USTACK_SERVERS_MAX_SIZE (65536), USTACK_SERVERS_SEED (1), USTACK_SERVERS_FETCHES (200);
# USTACK_SERVERS_VERBOSE=1 prints every process's output, also when everything passes.
set -euo pipefail

usage() { echo "usage: $0 BUILD_DIR kernel|ustack [DESIGN...]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
BUILD=$1
BACKEND=$2
shift 2
[[ "$BACKEND" == kernel || "$BACKEND" == ustack ]] || usage
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# new_netns/del_netns, stop_process (stops a process of ours by its PID); log is redefined below.
source "$HERE/../../scripts/lib.sh"
STATS="$HERE/../../scripts/ustack-stats"
APPS="$BUILD/apps"
[[ -d "$APPS" ]] || APPS="$BUILD"
PY=/usr/bin/python3            # Debian's python3 (JSON parsing)

ALL_DESIGNS=(iterative-server thread-server pool-server fork-server epoll-server epoll-et-server
  reuseport-server select-server poll-server udp-echo file-server unix-echo)
DESIGNS=()
for d in "$@"; do
  if [[ " ${ALL_DESIGNS[*]} " == *" $d "* ]]; then DESIGNS+=("$d")
  elif [[ " ${ALL_DESIGNS[*]} " == *" $d-server "* ]]; then DESIGNS+=("$d-server")
  else echo "$0: unknown design '$d' (one of: ${ALL_DESIGNS[*]})" >&2; exit 2
  fi
done
((${#DESIGNS[@]})) || DESIGNS=("${ALL_DESIGNS[@]}")

CLIENTS=${USTACK_SERVERS_CLIENTS:-200}
CONCURRENCY=${USTACK_SERVERS_CONCURRENCY:-20}
REQUESTS=${USTACK_SERVERS_REQUESTS:-100}
MAX_SIZE=${USTACK_SERVERS_MAX_SIZE:-65536}
SEED=${USTACK_SERVERS_SEED:-1}
FETCHES=${USTACK_SERVERS_FETCHES:-200}
for v in CLIENTS CONCURRENCY REQUESTS MAX_SIZE SEED FETCHES; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || { echo "$0: USTACK_SERVERS_$v must be a positive number" >&2; exit 2; }
done
UDP_MAX_SIZE=$((MAX_SIZE < 65507 ? MAX_SIZE : 65507))
PORT=7777
LEAK_WAIT=10                   # seconds for descriptors and connections to go back
WORKLOAD_LIMIT=150             # seconds for one workload run (a design that hangs fails)

SKIP=77
[[ "${USTACK_REQUIRE_ALL_TIERS:-0}" == 1 ]] && SKIP=1
log() { echo "servers[$BACKEND]: $*" >&2; }
if [[ $(id -u) -ne 0 ]]; then log "SKIP: needs root (namespaces, TAP, /proc/PID/fd)"; exit $SKIP; fi
missing=()
for tool in ip curl timeout "$PY"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then log "missing: ${missing[*]} (apt install iproute2 curl coreutils python3)"; exit 1; fi
[[ -x "$APPS/loadgen" ]] || { log "$APPS/loadgen not found (build first, or pass the build dir)"; exit 1; }

# The configuration is what this script sets, nothing inherited (USTACK_EAL passes through).
while read -r var; do
  case "$var" in USTACK_EAL | USTACK_REQUIRE_ALL_TIERS | USTACK_SERVERS_*) ;; *) unset "$var" ;; esac
done < <(compgen -e | grep '^USTACK_' || true)

NAMESPACES=()
TMP=$(mktemp -d /tmp/ustk-servers.XXXXXX)
BODIES=$(mktemp -d /dev/shm/ustk-servers.XXXXXX)   # file-server's fetched bodies (RAM)
SERVER_PID=""
FAILED=0
FAILED_LABELS=()   # their logs are shown before the summary
SUMMARY_DONE=0
RESULTS=()     # "design|result|seconds|requests/s|note"
T_START=$SECONDS

# show_logs FILE...: the end of each non-empty one, on stderr.
show_logs() {
  local f
  for f in "$@"; do
    [[ -s "$f" ]] || continue
    log "--- $(basename "$f")"
    tail -n 30 "$f" | cut -c 1-400 | sed 's/^/    /' >&2
  done
}

# Runs on every exit. No `set -e` here: one step failing must not skip the others.
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [[ -n "$SERVER_PID" ]] && stop_process "$SERVER_PID"
  # Stopped before the summary (which shows the failures' logs): everything's.
  if [[ $rc -ne 0 && $SUMMARY_DONE == 0 ]]; then show_logs "$TMP"/*.log; fi
  local ns
  for ns in "${NAMESPACES[@]}"; do
    # Whatever still runs in our namespaces was started by this run (a fork-server child, a curl).
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
    del_netns "$ns"
  done
  rm -rf -- "$TMP" "$BODIES"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A quiet namespace: loopback up, no IPv6 (no router solicitations or MLD on the test link).
make_ns() {
  local -n var=$1
  var=$(new_netns "$2")
  NAMESPACES+=("$var")
  ip netns exec "$var" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

if [[ "$BACKEND" == ustack ]]; then
  make_ns NS_SERVER ustk-srv
  NS_CLIENT=$NS_SERVER
  SERVER_IP=198.18.0.2
  CLIENT_IP=198.18.0.1
else
  make_ns NS_SERVER ustk-srv-s
  make_ns NS_CLIENT ustk-srv-c
  ip link add ust0 netns "$NS_CLIENT" type veth peer name ust1 netns "$NS_SERVER"
  ip -n "$NS_CLIENT" addr add 198.18.1.1/24 dev ust0
  ip -n "$NS_SERVER" addr add 198.18.1.2/24 dev ust1
  ip -n "$NS_CLIENT" link set ust0 up
  ip -n "$NS_SERVER" link set ust1 up
  SERVER_IP=198.18.1.2
  CLIENT_IP=198.18.1.1
fi

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# record DESIGN RESULT SECONDS RATE [NOTE]: RESULT is PASS, FAIL or another word for a pass
# ("refused (documented)").
record() {
  local design=$1 result=$2 secs=$3 rate=$4 note=${5:-}
  if [[ "$result" == FAIL ]]; then
    FAILED=1
    FAILED_LABELS+=("$design")
    log "FAIL $design: $note"
  else
    log "$result $design (${secs} s${rate:+, $rate req/s})${note:+: $note}"
  fi
  RESULTS+=("$design|$result|$secs|${rate:--}|$note")
}

# setup_tap PID: waits for the TAP ust0 that ustack process PID creates in the namespace, gives
# the namespace's kernel end its own MAC (net_tap gives it ours) and 198.18.0.1/24.
setup_tap() {
  local pid=$1 i
  for ((i = 0; i < 300; i++)); do
    ip -n "$NS_SERVER" link show ust0 >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { log "the server exited before its TAP appeared"; return 1; }
    sleep 0.02
  done
  ip -n "$NS_SERVER" link show ust0 >/dev/null 2>&1 || { log "TAP ust0 did not appear within 6 s"; return 1; }
  ip -n "$NS_SERVER" link set ust0 address 02:75:73:74:6b:01
  ip -n "$NS_SERVER" addr add "$CLIENT_IP/24" dev ust0
  ip -n "$NS_SERVER" link set ust0 up
}

SERVER_ENV=()  # more VAR=value for the ustack server (the two-engine runs)

# start_server NAME APP ARGS...: the app on this run's backend; waits for "serving" (30 s) and on
# ustack sets up the TAP. Sets SERVER_PID (the app itself: ip netns exec and env exec it) and
# SERVER_LOG.
start_server() {
  local name=$1 app=$2 i
  shift 2
  SERVER_LOG="$TMP/$name.log"
  if [[ "$BACKEND" == ustack ]]; then
    ip netns exec "$NS_SERVER" env USTACK_DEV=net_tap0,iface=ust0 USTACK_IP="$SERVER_IP/24" \
      USTACK_EAL="${USTACK_EAL:-}" "${SERVER_ENV[@]}" "$APPS/$app" --stack ustack --stats "$@" >"$SERVER_LOG" 2>&1 &
  else
    ip netns exec "$NS_SERVER" "$APPS/$app" --stack kernel "$@" >"$SERVER_LOG" 2>&1 &
  fi
  SERVER_PID=$!
  for ((i = 0; i < 300; i++)); do
    grep -q serving "$SERVER_LOG" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { START_ERROR="exited before serving: $(tail -n 2 "$SERVER_LOG" | tr '\n' ' ')"; return 1; }
    sleep 0.1
  done
  grep -q serving "$SERVER_LOG" || { START_ERROR="did not print 'serving' within 30 s"; return 1; }
  if [[ "$BACKEND" == ustack ]]; then setup_tap "$SERVER_PID" || { START_ERROR="no TAP"; return 1; }; fi
}

# stop_server: SIGTERM; sets STOP_WHY to "" if it exited 0, else to why not. (Not in $(...): a
# subshell cannot wait for our children.)
stop_server() {
  local pid=$SERVER_PID status=0
  SERVER_PID=""
  stop_process "$pid" || status=$?
  STOP_WHY=""
  ((status == 0)) || STOP_WHY="exit status $status on SIGTERM (want 0)"
}

# ---- what a server holds ----

# kernel_sockets PID: socket descriptors in /proc/PID/fd (the kernel's, on either backend).
kernel_sockets() {
  find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' 2>/dev/null | wc -l
}

# ustack_gauges PID: "OPEN CONNECTIONS TIME_WAIT" from /ustack/stats; "-" for a gauge the stats do
# not have, "? ? ?" when they cannot be read.
ustack_gauges() {
  timeout -k 2 5 "$PY" "$STATS" "$1" --json 2>/dev/null | "$PY" -c '
import json, sys
try:
    s = json.loads(sys.stdin.read())
except Exception:
    print("? ? ?"); sys.exit()
print(" ".join(str(s.get(k, "-")) for k in ("api.open_descriptors", "tcp.connections", "tcp.time_wait")))
' || echo "? ? ?"
}

# snapshot PID: "KERNEL_SOCKETS OPEN CONNECTIONS TIME_WAIT" (the last three "-" on the kernel).
snapshot() {
  local k
  k=$(kernel_sockets "$1")
  if [[ "$BACKEND" == ustack ]]; then echo "$k $(ustack_gauges "$1")"; else echo "$k - - -"; fi
}

# gauges_present SNAPSHOT: false if the stats cannot be read or lack one of the gauges.
gauges_present() {
  local k o c t
  read -r k o c t <<<"$1"
  [[ "$BACKEND" == ustack ]] || return 0
  [[ "$o" != "?" && "$o" != - && "$c" != - && "$t" != - ]]
}

# leak_check PID BEFORE: polls until what the server holds is back to BEFORE (a snapshot); prints
# "" when it is, else what is left.
leak_check() {
  local pid=$1 before=$2 deadline=$((SECONDS + LEAK_WAIT)) now_ why
  local k0 o0 _c0 _t0 k o c t
  read -r k0 o0 _c0 _t0 <<<"$before"
  while :; do
    now_=$(snapshot "$pid")
    read -r k o c t <<<"$now_"
    why=()
    ((k == k0)) || why+=("kernel socket descriptors $k0 before, $k after")
    if [[ "$BACKEND" == ustack ]]; then
      if [[ "$o" == "?" ]]; then
        why+=("cannot read the stats ($STATS $pid)")
      else
        [[ "$o" == - || "$o" == "$o0" ]] || why+=("api.open_descriptors $o0 before, $o after")
        # TIME-WAIT is no leak (a server that closes first keeps its side of each connection
        # there for 60 s); anything else left is.
        local live=$((c - t))
        ((live == 0)) || why+=("tcp.connections $c ($t in TIME-WAIT) after the clients left")
      fi
    fi
    ((${#why[@]} == 0)) && return 0
    if ((SECONDS >= deadline)); then
      local IFS=';'
      echo "leak after ${LEAK_WAIT} s: ${why[*]}"
      return 0
    fi
    sleep 0.2
  done
}

# ---- the clients ----

# In the client namespace, with a time limit.
client() { timeout -k 5 "$WORKLOAD_LIMIT" ip netns exec "$NS_CLIENT" "$@"; }

# json_check LOG CLIENTS REQUESTS: reads the client's JSON result (the last line of LOG that is
# a JSON object); prints "RATE|WHY" (WHY empty when the run is complete and error-free).
json_check() {
  grep '^{' "$1" 2>/dev/null | tail -n 1 | "$PY" -c '
import json, sys
clients, per_client = int(sys.argv[1]), int(sys.argv[2])
try:
    r = json.loads(sys.stdin.read())
except Exception:
    print("-|no JSON result line"); sys.exit()
why = []
if r.get("errors", 1):
    kinds = ", ".join("%s %d" % (k[7:], v) for k, v in r.items() if k.startswith("errors_") and v)
    why.append("%s errors (%s)" % (r.get("errors"), kinds))
if "clients_done" in r and r["clients_done"] != clients:
    why.append("%d of %d clients done" % (r["clients_done"], clients))
if r.get("requests") != clients * per_client:
    why.append("%s requests done of %d" % (r.get("requests"), clients * per_client))
print("%.0f|%s" % (r.get("requests_per_s", 0), "; ".join(why)))
' "$2" "$3"
}

# run_mixed KIND LOG CLIENTS REQUESTS: the mixed workload against the server (KIND tcp, udp or
# unix). Prints "RATE|WHY".
run_mixed() {
  local kind=$1 logf=$2 clients=$3 requests=$4 status=0 verdict
  # (udp-client is in its mixed mode when given --clients; it has no --mode.)
  local shape=(--clients "$clients" --concurrency "$((CONCURRENCY < clients ? CONCURRENCY : clients))"
    --requests "$requests" --min-size 1 --seed "$SEED" --json)
  case "$kind" in
    tcp) client "$APPS/loadgen" --stack kernel --host "$SERVER_IP" --port "$PORT" --mode mixed "${shape[@]}" \
      --max-size "$MAX_SIZE" >"$logf" 2>&1 || status=$? ;;
    unix) client "$APPS/loadgen" --stack kernel --unix "$UNIX_PATH" --mode mixed "${shape[@]}" \
      --max-size "$MAX_SIZE" >"$logf" 2>&1 || status=$? ;;
    udp) client "$APPS/udp-client" --stack kernel --host "$SERVER_IP" --port "$PORT" "${shape[@]}" \
      --max-size "$UDP_MAX_SIZE" >"$logf" 2>&1 || status=$? ;;
  esac
  verdict=$(json_check "$logf" "$clients" "$requests")
  if ((status != 0)); then
    local reason=${verdict#*|}
    verdict="${verdict%%|*}|exit status $status${reason:+; $reason}: $(grep -v '^{' "$logf" | tail -n 2 | tr '\n' ' ')"
  fi
  echo "$verdict"
}

# The files file-server serves: random bytes, one of each size.
WWW="$TMP/www"
make_files() {
  mkdir -p "$WWW"
  local spec
  for spec in empty:0 one:1 k1:1000 k64:65536 m1:1048576 m10:10485760; do
    head -c "${spec##*:}" /dev/urandom >"$WWW/${spec%%:*}.bin"
  done
}
FILE_NAMES=(empty.bin one.bin k1.bin k64.bin m1.bin m10.bin)

# run_fetches LOG COUNT: COUNT fetches by one curl, CONCURRENCY connections at once (the files in
# turn), each body compared byte for byte with its file. Prints "RATE|WHY" (RATE: fetches per
# second). The bodies go to RAM (/dev/shm): about 2 MiB per fetch until compared.
# (Compared byte for byte rather than by sha256: just as exact, and hashing 400 MB took 9 s of
# this loaded 2-core machine's time per run; one curl process rather than one per fetch too.)
run_fetches() {
  local logf=$1 count=$2 i t0 secs status=0 bad=0 first_bad="" ok200 rate
  local args=()
  for ((i = 0; i < count; i++)); do
    : >"$BODIES/$i"   # curl creates no file for an empty body
    args+=(-o "$BODIES/$i" "http://$SERVER_IP:$PORT/${FILE_NAMES[i % ${#FILE_NAMES[@]}]}")
  done
  t0=$(now)
  client curl -sS --max-time 60 --parallel --parallel-max "$CONCURRENCY" -w '%{http_code}\n' "${args[@]}" \
    >"$TMP/codes" 2>"$logf" || status=$?
  secs=$(elapsed "$t0")
  # One process compares them all ("BAD FIRST_DIFFERENCE" or "0"): 200 cmp processes took 7 s.
  bad=1 first_bad="no comparison"
  read -r bad first_bad < <(for ((i = 0; i < count; i++)); do
    echo "$BODIES/$i $WWW/${FILE_NAMES[i % ${#FILE_NAMES[@]}]}"
  done | "$PY" -c '
import sys
bad, first = 0, ""
for line in sys.stdin:
    got, want = line.split()
    what = "fetch %s of %s" % (got.rsplit("/", 1)[1], want.rsplit("/", 1)[1])
    try:
        with open(got, "rb") as g, open(want, "rb") as w:
            off = 0
            while True:
                a, b = g.read(1 << 20), w.read(1 << 20)
                if a != b:
                    n = min(len(a), len(b))
                    off += next((k for k in range(n) if a[k] != b[k]), n)
                    raise ValueError("differs from byte %d" % off)
                if not a:
                    break
                off += len(a)
    except (OSError, ValueError) as e:
        bad += 1
        first = first or "%s: %s" % (what, e)
print(bad, first)
' || echo "1 the comparison failed")
  rm -f -- "$BODIES"/*
  ok200=$(grep -c '^200$' "$TMP/codes" || true)
  rate=$(awk -v n="$count" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
  if ((status != 0 || bad != 0 || ok200 != count)); then
    echo "$rate|curl status $status; $ok200 of $count HTTP 200, $bad bodies differ${first_bad:+ (first: $first_bad)}: $(head -n 2 "$logf" | tr '\n' ' ')"
  else
    echo "$rate|"
  fi
}

# ---- one design ----

# run_design DESIGN LABEL ARGS...: start, workload, still serving, leaks, stop; records LABEL.
run_design() {
  local design=$1 label=$2 t0 secs verdict rate why before leak stop_why
  shift 2
  local kind=tcp
  case "$design" in udp-echo) kind=udp ;; file-server) kind=http ;; unix-echo) kind=unix ;; esac
  t0=$(now)
  if [[ ! -x "$APPS/$design" ]]; then record "$label" FAIL - - "$APPS/$design not built"; return; fi
  if [[ "$kind" == udp && ! -x "$APPS/udp-client" ]]; then record "$label" FAIL - - "udp-client not built"; return; fi
  START_ERROR=""
  if ! start_server "$label" "$design" "$@"; then
    [[ -n "$SERVER_PID" ]] && { stop_process "$SERVER_PID" || true; SERVER_PID=""; }
    record "$label" FAIL "$(elapsed "$t0")" - "$START_ERROR"
    return
  fi
  before=$(snapshot "$SERVER_PID")
  gauges_present "$before" || { record "$label" FAIL "$(elapsed "$t0")" - "cannot read the gauges: $before"; stop_server; return; }
  case "$kind" in
    http) verdict=$(run_fetches "$TMP/$label-fetch.log" "$FETCHES") ;;
    *) verdict=$(run_mixed "$kind" "$TMP/$label-client.log" "$CLIENTS" "$REQUESTS") ;;
  esac
  rate=${verdict%%|*} why=${verdict#*|}
  # Still serving: a short second run.
  if [[ -z "$why" ]]; then
    case "$kind" in
      http) verdict=$(run_fetches "$TMP/$label-again.log" "${#FILE_NAMES[@]}") ;;
      *) verdict=$(run_mixed "$kind" "$TMP/$label-again.log" 10 10) ;;
    esac
    [[ -z "${verdict#*|}" ]] || why="not serving after the workload: ${verdict#*|}"
  fi
  leak=$(leak_check "$SERVER_PID" "$before")
  log "$label holds (kernel sockets, ustack descriptors, TCP connections, TIME-WAIT): before $before, after $(snapshot "$SERVER_PID")"
  stop_server
  stop_why=$STOP_WHY
  ((${#SERVER_ENV[@]} == 0)) || stop_why=$(printf '%s\n' "$stop_why" "$(engines_check "$design" "$SERVER_LOG")")
  secs=$(elapsed "$t0")
  why=$(printf '%s\n' "$why" "$leak" "$stop_why" | awk 'NF { printf "%s%s", (n++ ? "; " : ""), $0 }')
  if [[ -n "$why" ]]; then record "$label" FAIL "$secs" "$rate" "$why"; else record "$label" PASS "$secs" "$rate"; fi
}

# engines_check DESIGN LOG: a two-engine run used both engines (the counters --stats printed at
# exit): reuseport-server's threads, one listener per engine, each accepted connections; for a
# server with one listener, frames that reached the other engine's queue were forwarded to it.
# Prints why not, or nothing.
engines_check() {
  local design=$1 logf=$2 per_thread steered
  if [[ "$design" == reuseport-server ]]; then
    per_thread=$(grep -o 'connections per thread:[ 0-9]*' "$logf" | head -n 1)
    [[ -n "$per_thread" ]] || { echo "no per-thread counts in the server's summary"; return; }
    [[ "$per_thread" =~ :\ [1-9][0-9]*\ [1-9][0-9]*$ ]] || echo "an engine's listener accepted nothing ($per_thread)"
  else
    steered=$(awk '$1 == "dev.steered_out" { print $2 }' "$logf")
    [[ "${steered:-0}" -gt 0 ]] || echo "nothing was forwarded between the engines (dev.steered_out ${steered:-missing}): one queue only?"
  fi
}

# fork-server on ustack: must refuse at start, exit status 3, a message naming fork.
run_fork_refused() {
  local label=fork-server t0 status=0 logf="$TMP/fork-server.log"
  t0=$(now)
  if [[ ! -x "$APPS/fork-server" ]]; then record "$label" FAIL - - "$APPS/fork-server not built"; return; fi
  timeout -k 5 30 ip netns exec "$NS_SERVER" env USTACK_DEV=net_tap0,iface=ust0 USTACK_IP="$SERVER_IP/24" \
    USTACK_EAL="${USTACK_EAL:-}" "$APPS/fork-server" --stack ustack --port "$PORT" >"$logf" 2>&1 || status=$?
  if ((status == 3)) && grep -qi fork "$logf" && ! grep -q serving "$logf"; then
    record "$label" "refused (documented)" "$(elapsed "$t0")" - "$(grep -i -m 1 fork "$logf" | cut -c 1-100)"
  else
    record "$label" FAIL "$(elapsed "$t0")" - "on ustack: exit status $status (want 3 with a message naming fork): $(tail -n 2 "$logf" | tr '\n' ' ')"
  fi
}

log "designs: ${DESIGNS[*]}"
log "workload: $CLIENTS clients, $CONCURRENCY at once, $REQUESTS requests each of 1 to $MAX_SIZE bytes, seed $SEED; $FETCHES fetches for file-server; server $SERVER_IP, clients $CLIENT_IP"
for design in "${DESIGNS[@]}"; do
  case "$design" in
    fork-server) if [[ "$BACKEND" == ustack ]]; then run_fork_refused; else run_design fork-server fork-server --port "$PORT"; fi ;;
    file-server)
      [[ -d "$WWW" ]] || make_files
      run_design file-server "file-server(sendfile)" --port "$PORT" --root "$WWW" --io sendfile
      run_design file-server "file-server(readwrite)" --port "$PORT" --root "$WWW" --io readwrite ;;
    unix-echo)
      UNIX_PATH="$TMP/unix-echo.sock"
      run_design unix-echo unix-echo --path "$UNIX_PATH" ;;
    *) run_design "$design" "$design" --port "$PORT" ;;
  esac
  if [[ "$BACKEND" == ustack && ( "$design" == reuseport-server || "$design" == epoll-server ) ]]; then
    SERVER_ENV=(USTACK_CORES=2)
    run_design "$design" "$design(2 engines)" --port "$PORT"
    SERVER_ENV=()
  fi
done

# ---- summary ----
for label in "${FAILED_LABELS[@]}"; do show_logs "$TMP/$label"*.log; done
if [[ -n "${USTACK_SERVERS_VERBOSE:-}" ]]; then show_logs "$TMP"/*.log; fi
SUMMARY_DONE=1
log "summary ($BACKEND; $CLIENTS x $REQUESTS mixed requests, 1 to $MAX_SIZE B, seed $SEED; $((SECONDS - T_START)) s in all):"
{
  printf '%-24s %-7s %-21s %8s %11s  %s\n' design backend result seconds requests/s note
  for r in "${RESULTS[@]}"; do
    IFS='|' read -r d res s rt note <<<"$r"
    printf '%-24s %-7s %-21s %8s %11s  %s\n' "$d" "$BACKEND" "$res" "$s" "$rt" "$note"
  done
}
if ((FAILED)); then log "FAIL"; exit 1; fi
log "PASS: all ${#RESULTS[@]} runs"
