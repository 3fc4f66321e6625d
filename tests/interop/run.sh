#!/usr/bin/env bash
# The interop tier: real Linux peers against ustack, every byte checked.
#
#   tests/interop/run.sh [BUILD_DIR]      (as root; BUILD_DIR default: $USTACK_BUILD, else
#                                          /work/main/build)
#
# 1. Linux clients -> ustack servers. Namespace A; an app runs in it with --stack ustack on
#    net_tap (ustack 198.18.0.2/24), so the TAP ust0 appears there; the namespace's kernel end of
#    ust0 (198.18.0.1/24) runs the Linux clients:
#      epoll-server (TCP echo) <- nc sends a file and reads it back (cmp);
#                              <- loadgen --stack kernel: rr on 1 and 16 connections, 1,000 short
#                                 connections (cps), 1 GiB bulk on one connection;
#      http-responder          <- curl: / and /size/N, each body compared with the pattern
#                                 (byte i = (i * 131 + 7) mod 256) computed here.
# 2. ustack clients -> Linux servers. Namespace B; Linux servers listen on 0.0.0.0 there before
#    any TAP exists: epoll-server --stack kernel, socat (an echo independent of our code: a
#    process per connection echoing through a pipe) and Debian's python3 -m http.server over a temp dir with a 10 MB
#    random file. Each ustack client is a process of its own (one ustack process per TAP at a
#    time), ustack 198.18.0.2/24, the Linux servers at 198.18.0.1:
#      loadgen --stack ustack -> epoll-server and socat: 1,000 short connections, 1 GiB bulk;
#      http-fetch --stack ustack -> http.server: the 10 MB file, sha256 compared.
# loadgen checks every byte echoed (a pseudo-random stream per connection) and counts errors;
# a case passes when its process exits 0, reports errors == 0 and did all the requests asked.
# ustack servers must also exit 0 on SIGTERM. A summary table (case, result, seconds, throughput)
# is printed at the end.
#
# Everything (namespaces, TAPs, processes, temp files) is removed on exit, also on failure; the
# host's own interfaces are never touched (every link is made inside a namespace of this run).
# Addresses only in 198.18.0.0/24. Every command has a time limit.
# Exit status: 0 all cases pass, 1 a failure, 77 cannot run here (not root): SKIP (1 instead when
# USTACK_REQUIRE_ALL_TIERS=1, as scripts/test sets).
#
# Environment: USTACK_BUILD (build dir), USTACK_EAL (extra EAL arguments for ustack),
# USTACK_INTEROP_BULK_MB (bulk volume per direction in MiB, default 1024), USTACK_INTEROP_VERBOSE=1
# (print every process's output, with ustack's counters, also when everything passes).
set -euo pipefail

BUILD=${1:-${USTACK_BUILD:-/work/main/build}}
# stop_process (stops a process of ours by its PID); log is redefined below.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
PY=/usr/bin/python3            # Debian's python3 (http.server, the pattern, JSON parsing)
USTACK_IP=198.18.0.2
KERNEL_IP=198.18.0.1
PREFIX=24
KERNEL_MAC=02:75:73:74:6b:01   # the kernel end of ust0 gets a MAC of its own (net_tap gives it ours)
ECHO_PORT=7777                 # epoll-server (ustack in part 1, kernel in part 2)
HTTP_PORT=8080                 # http-responder on ustack
SOCAT_PORT=7778                # socat echo (part 2)
PYHTTP_PORT=8000               # python3 -m http.server (part 2)
BULK_MB=${USTACK_INTEROP_BULK_MB:-1024}
BULK_BLOCK=65536
BULK_REQUESTS=$((BULK_MB * 1024 * 1024 / BULK_BLOCK))
CPS_REQUESTS=1000
DPDK_RUN=/var/run/dpdk

SKIP=77
[[ "${USTACK_REQUIRE_ALL_TIERS:-0}" == 1 ]] && SKIP=1
log() { echo "interop: $*" >&2; }
if [[ $(id -u) -ne 0 ]]; then log "SKIP: needs root (namespaces, TAP)"; exit $SKIP; fi
missing=()
for tool in ip nc curl socat sha256sum cmp "$PY"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  log "missing: ${missing[*]} (apt install iproute2 netcat-openbsd curl socat python3)"
  exit 1
fi
for app in epoll-server loadgen http-responder http-fetch; do
  [[ -x "$BUILD/apps/$app" ]] || { log "$BUILD/apps/$app not found (build first, or pass the build dir)"; exit 1; }
done

# The configuration is what this script sets, nothing inherited (USTACK_EAL passes through).
while read -r var; do
  case "$var" in USTACK_BUILD | USTACK_EAL | USTACK_REQUIRE_ALL_TIERS | USTACK_INTEROP_*) ;; *) unset "$var" ;; esac
done < <(compgen -e | grep '^USTACK_' || true)

RUN_ID="$$-$RANDOM"
NS_A="ustk-iop-$RUN_ID-a"
NS_B="ustk-iop-$RUN_ID-b"
NAMESPACES=()
TMP=$(mktemp -d /tmp/ustk-interop.XXXXXX)
PIDS=()        # long-running processes started here (servers), stopped by PID at exit
FAILED=0
RESULTS=()     # "case|result|seconds|throughput"
T_START=$SECONDS

# Runs on every exit. No `set -e` here: one step failing must not skip the others.
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  local pid
  for pid in "${PIDS[@]}"; do stop_process "$pid" || true; done
  if [[ $rc -ne 0 || -n "${USTACK_INTEROP_VERBOSE:-}" ]]; then
    for f in "$TMP"/*.log; do
      [[ -s "$f" ]] || continue
      log "--- $(basename "$f")"
      tail -n 60 "$f" | sed 's/^/    /' >&2
    done
  fi
  local ns
  for ns in "${NAMESPACES[@]}"; do
    # Whatever is still running in our namespaces was started by this run (socat's per-connection
    # children, say, which stopping the listener does not end).
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf -- "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A quiet namespace: loopback up, no IPv6 (no router solicitations or MLD on the test link).
make_ns() {
  ip netns add "$1"
  NAMESPACES+=("$1")
  ip -n "$1" link set lo up
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# setup_tap NS PID: waits for the TAP ust0 that ustack process PID creates in NS, then gives the
# namespace's kernel end its own MAC and 198.18.0.1/24 and brings it up.
setup_tap() {
  local ns=$1 pid=$2 i
  for ((i = 0; i < 300; i++)); do
    ip -n "$ns" link show ust0 >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { log "ustack process $pid exited before its TAP appeared"; return 1; }
    sleep 0.02
  done
  ip -n "$ns" link show ust0 >/dev/null 2>&1 || { log "TAP ust0 did not appear in $ns within 6 s"; return 1; }
  ip -n "$ns" link set ust0 address "$KERNEL_MAC"
  ip -n "$ns" addr add "$KERNEL_IP/$PREFIX" dev ust0
  ip -n "$ns" link set ust0 up
}

# wait_for NAME FILE PATTERN SECONDS PID: waits for PATTERN in FILE while PID lives.
wait_for() {
  local name=$1 file=$2 pattern=$3 secs=$4 pid=$5 i
  for ((i = 0; i < secs * 10; i++)); do
    grep -q "$pattern" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { log "$name exited before '$pattern'"; return 1; }
    sleep 0.1
  done
  log "$name did not print '$pattern' within ${secs}s"
  return 1
}

# wait_deadline PID SECONDS: waits for PID (a child); past SECONDS it is stopped (SIGTERM, then
# SIGKILL). Returns the exit status (124 when it had to be stopped).
wait_deadline() {
  local pid=$1 secs=$2 status=0 i
  for ((i = 0; i < secs * 20; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid still running after ${secs}s: stopping it"
    stop_process "$pid" || true
    return 124
  fi
  wait "$pid" || status=$?
  if ((status != 0)); then rm -rf "$DPDK_RUN/ustack-$pid" 2>/dev/null || true; fi
  return $status
}

now() { date +%s.%N; }
# rate BYTES SECONDS: "12.3 MB/s", or the size alone for small transfers (their time is latency).
rate() {
  awk -v n="$1" -v s="$2" 'BEGIN { if (n < 100000 || s <= 0) printf "%d bytes", n; else printf "%.1f MB/s", n / s / 1e6 }'
}
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# record CASE OK(0/1) SECONDS THROUGHPUT [WHY]
record() {
  local name=$1 ok=$2 secs=$3 tput=$4 why=${5:-}
  if [[ $ok == 1 ]]; then
    log "PASS $name (${secs} s, $tput)"
    RESULTS+=("$name|PASS|$secs|$tput")
  else
    log "FAIL $name: $why"
    RESULTS+=("$name|FAIL|$secs|$tput")
    FAILED=1
  fi
}

# loadgen_check CASE LOG WANT_REQUESTS ELAPSED STATUS: checks loadgen's JSON line (errors == 0,
# every request done), records the case.
loadgen_check() {
  local name=$1 logf=$2 want=$3 secs=$4 status=$5 verdict
  verdict=$(tail -n 1 "$logf" | "$PY" -c '
import json, sys
want = int(sys.argv[1])
try:
    r = json.loads(sys.stdin.read())
except Exception:
    print("0|-|no JSON result line"); sys.exit()
if r["mode"] == "bulk":
    tput = "%.1f MB/s echoed" % (r["bytes_per_s"] / 1e6)
else:
    tput = "%.0f req/s, p99 %.0f us" % (r["requests_per_s"], r["p99_us"])
why = []
if r["errors"]: why.append("%d errors (connect %d, reset %d, early_eof %d, mismatch %d, stall %d, other %d)" % (
    r["errors"], r["errors_connect"], r["errors_reset"], r["errors_early_eof"], r["errors_mismatch"],
    r["errors_stall"], r["errors_other"]))
if r["requests"] != want: why.append("%d requests done of %d" % (r["requests"], want))
print("%d|%s|%s" % (0 if why else 1, tput, "; ".join(why)))
' "$want")
  local ok=${verdict%%|*} rest=${verdict#*|}
  local tput=${rest%%|*} why=${rest#*|}
  if ((status != 0)); then ok=0; why="exit status $status${why:+; $why}"; fi
  record "$name" "$ok" "$secs" "$tput" "$why (log: $(tail -n 3 "$logf" | head -n 2 | tr '\n' ' '))"
}

# ---- 1. Linux clients -> ustack servers ----

# start_ustack_server NAME APP ARGS...: the app with --stack ustack in namespace A, TAP set up.
SERVER_PID=""
start_ustack_server() {
  local name=$1 app=$2
  shift 2
  ip netns exec "$NS_A" env USTACK_DEV=net_tap0,iface=ust0 USTACK_IP="$USTACK_IP/$PREFIX" \
    USTACK_EAL="${USTACK_EAL:-}" "$BUILD/apps/$app" --stack ustack --stats "$@" >"$TMP/$name.log" 2>&1 &
  SERVER_PID=$!   # the app itself: ip netns exec and env exec it
  PIDS+=("$SERVER_PID")
  wait_for "$app" "$TMP/$name.log" "$app: serving" 30 "$SERVER_PID"
  setup_tap "$NS_A" "$SERVER_PID"
}

# stop_ustack_server NAME: SIGTERM; the server must exit 0. Logs its non-zero TCP counters.
stop_ustack_server() {
  local name=$1 pid=$SERVER_PID status=0
  SERVER_PID=""
  local keep=() p
  for p in "${PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
  stop_process "$pid" || status=$?
  grep -E "^epoll-server: [0-9]+ connections|^http-responder: " "$TMP/$name.log" | sed 's/^/    /' >&2 || true
  log "$name counters: $(grep -E '^tcp\.(rx_resets|tx_resets|retransmits|fast_retransmits|rto_timeouts|out_of_window|rx_out_of_order) [1-9]' "$TMP/$name.log" | tr '\n' ' ')"
  if ((status != 0)); then
    record "$name exits cleanly" 0 - - "exit status $status on SIGTERM (want 0)"
  fi
}

make_ns "$NS_A"
log "part 1: Linux clients in $NS_A ($KERNEL_IP) -> ustack servers ($USTACK_IP)"
start_ustack_server echo-server-ustack epoll-server --port "$ECHO_PORT"

# nc sends a file and reads the echo back: -N shuts its sending side down at the end of the file,
# the server then echoes the rest and closes, nc exits at EOF.
head -c $((8 * 1024 * 1024 + 12345)) /dev/urandom >"$TMP/nc.in"
t0=$(now)
status=0
timeout -k 5 60 ip netns exec "$NS_A" nc -N -w 10 "$USTACK_IP" "$ECHO_PORT" <"$TMP/nc.in" >"$TMP/nc.out" 2>"$TMP/nc.log" || status=$?
secs=$(elapsed "$t0")
tput=$(rate "$(stat -c %s "$TMP/nc.in")" "$secs")
if ((status == 0)) && cmp -s "$TMP/nc.in" "$TMP/nc.out"; then
  record "nc file (8 MB) -> epoll-server/ustack" 1 "$secs" "$tput"
else
  record "nc file (8 MB) -> epoll-server/ustack" 0 "$secs" "$tput" \
    "nc status $status; sent $(stat -c %s "$TMP/nc.in") bytes, got $(stat -c %s "$TMP/nc.out") back: $(cmp "$TMP/nc.in" "$TMP/nc.out" 2>&1 | head -n 1)"
fi

# run_kernel_loadgen CASE REQUESTS TIME_LIMIT LOADGEN_ARGS...: loadgen --stack kernel in namespace A.
run_kernel_loadgen() {
  local name=$1 want=$2 limit=$3 logf="$TMP/lg-$((${#RESULTS[@]} + 1)).log" status=0
  shift 3
  local t0
  t0=$(now)
  timeout -k 5 "$limit" ip netns exec "$NS_A" "$BUILD/apps/loadgen" --stack kernel --host "$USTACK_IP" \
    --port "$ECHO_PORT" --json "$@" --requests "$want" >"$logf" 2>&1 || status=$?
  loadgen_check "$name" "$logf" "$want" "$(elapsed "$t0")" "$status"
}

run_kernel_loadgen "loadgen/kernel rr 1 conn -> ustack" 5000 60 --mode rr --connections 1 --size 64
run_kernel_loadgen "loadgen/kernel rr 16 conns -> ustack" 50000 60 --mode rr --connections 16 --size 64
run_kernel_loadgen "loadgen/kernel cps 1000 conns -> ustack" "$CPS_REQUESTS" 60 --mode cps --connections 8 --size 64
run_kernel_loadgen "loadgen/kernel bulk $BULK_MB MiB -> ustack" "$BULK_REQUESTS" 180 --mode bulk --connections 1 --size "$BULK_BLOCK"
stop_ustack_server echo-server-ustack

# http-responder on ustack, curl fetches bodies; each compared with the pattern made here.
start_ustack_server http-responder-ustack http-responder --port "$HTTP_PORT" --body-size 2000
pattern() {  # pattern N FILE: byte i = (i * 131 + 7) mod 256 (period 256)
  "$PY" -c '
import sys
n = int(sys.argv[1])
block = bytes((i * 131 + 7) % 256 for i in range(256))
with open(sys.argv[2], "wb") as f:
    for off in range(0, n, 1 << 20):
        m = min(1 << 20, n - off)
        f.write((block * (m // 256 + 1))[:m])
' "$1" "$2"
}
for spec in "/:2000" "/size/0:0" "/size/1:1" "/size/1000003:1000003" "/size/10000000:10000000"; do
  path=${spec%%:*} n=${spec##*:}
  pattern "$n" "$TMP/want.bin"
  t0=$(now)
  status=0
  # curl's own transfer time (from its start of the request) makes the rate; the wall time has
  # process start-up in it.
  read -r code ctime < <(timeout -k 5 60 ip netns exec "$NS_A" curl -sS --max-time 50 -o "$TMP/curl.out" \
    -w '%{http_code} %{time_total}\n' "http://$USTACK_IP:$HTTP_PORT$path" 2>"$TMP/curl.log" || echo "000 0")
  secs=$(elapsed "$t0")
  got=$(stat -c %s "$TMP/curl.out" 2>/dev/null || echo 0)
  tput=$(rate "$got" "$ctime")
  [[ "$code" == 000 ]] && status=1
  if ((status == 0)) && [[ "$code" == 200 ]] && cmp -s "$TMP/want.bin" "$TMP/curl.out"; then
    record "curl GET $path ($n B) -> http-responder/ustack" 1 "$secs" "$tput"
  else
    record "curl GET $path ($n B) -> http-responder/ustack" 0 "$secs" "$tput" \
      "curl status $status, HTTP $code, $got bytes; $(cmp "$TMP/want.bin" "$TMP/curl.out" 2>&1 | head -n 1) $(cat "$TMP/curl.log")"
  fi
  rm -f "$TMP/curl.out"
done
# 32 fetches, 8 at a time: concurrent connections to the one server.
pattern 100000 "$TMP/want.bin"
urls=()
for i in $(seq 32); do urls+=(-o "$TMP/par-$i.out" "http://$USTACK_IP:$HTTP_PORT/size/100000"); done
t0=$(now)
status=0
codes=$(timeout -k 5 60 ip netns exec "$NS_A" curl -sS --max-time 50 --parallel --parallel-max 8 -w '%{http_code}\n' \
  "${urls[@]}" 2>"$TMP/curl.log") || status=$?
secs=$(elapsed "$t0")
bad=0
for i in $(seq 32); do cmp -s "$TMP/want.bin" "$TMP/par-$i.out" || bad=$((bad + 1)); done
ok200=$(grep -c '^200$' <<<"$codes" || true)
if ((status == 0 && bad == 0 && ok200 == 32)); then
  record "curl --parallel 32 x GET /size/100000 -> http-responder/ustack" 1 "$secs" "$(rate 3200000 "$secs")"
else
  record "curl --parallel 32 x GET /size/100000 -> http-responder/ustack" 0 "$secs" - \
    "curl status $status, $ok200 of 32 HTTP 200, $bad bodies differ; $(head -n 3 "$TMP/curl.log")"
fi
stop_ustack_server http-responder-ustack
ip netns del "$NS_A" 2>/dev/null || true

# ---- 2. ustack clients -> Linux servers ----

make_ns "$NS_B"
log "part 2: ustack clients ($USTACK_IP) -> Linux servers in $NS_B ($KERNEL_IP)"
# start_kernel_server NAME CMD...: in namespace B, bound to 0.0.0.0 before any TAP exists.
start_kernel_server() {
  local name=$1
  shift
  ip netns exec "$NS_B" "$@" >"$TMP/$name.log" 2>&1 &
  PIDS+=("$!")
}
start_kernel_server echo-server-kernel "$BUILD/apps/epoll-server" --stack kernel --port "$ECHO_PORT"
# -b 4096: socat echoes through one pipe it both writes and reads; with its default 8 KiB block it
# can block writing 8 KiB into a pipe that select() called writable with only PIPE_BUF (4 KiB)
# free, and then nobody drains the pipe (a slow reader on the TCP side fills it): socat hangs.
start_kernel_server socat-echo socat -b 4096 "TCP-LISTEN:$SOCAT_PORT,fork,reuseaddr,backlog=128" PIPE
mkdir "$TMP/www"
head -c 10000000 /dev/urandom >"$TMP/www/file.bin"
start_kernel_server python-http "$PY" -m http.server "$PYHTTP_PORT" --bind 0.0.0.0 --directory "$TMP/www"
# Ready when each listens (ss in the namespace).
for ((i = 0; i < 100; i++)); do
  listening=$(ip netns exec "$NS_B" ss -Hltn | awk '{print $4}' | grep -cE ":($ECHO_PORT|$SOCAT_PORT|$PYHTTP_PORT)$" || true)
  ((listening >= 3)) && break
  sleep 0.1
done
((listening >= 3)) || { log "the Linux servers did not all listen within 10 s"; exit 1; }

# run_ustack_client CASE LIMIT APP ARGS...: one ustack client process in namespace B, its TAP set
# up; output in $LAST_LOG, exit status in $LAST_STATUS, wall time in $LAST_SECS.
run_ustack_client() {
  local name=$1 limit=$2 app=$3 pid
  shift 3
  LAST_LOG="$TMP/client-$((${#RESULTS[@]} + 1)).log"
  LAST_STATUS=0
  local t0
  t0=$(now)
  ip netns exec "$NS_B" env USTACK_DEV=net_tap0,iface=ust0 USTACK_IP="$USTACK_IP/$PREFIX" \
    USTACK_EAL="${USTACK_EAL:-}" "$BUILD/apps/$app" --stack ustack --stats "$@" >"$LAST_LOG" 2>"$LAST_LOG.err" &
  pid=$!
  setup_tap "$NS_B" "$pid" || true
  wait_deadline "$pid" "$limit" || LAST_STATUS=$?
  LAST_SECS=$(elapsed "$t0")
  log "$name counters: $(grep -E '^tcp\.(rx_resets|tx_resets|retransmits|fast_retransmits|rto_timeouts|syn_retransmits|out_of_window|rx_out_of_order) [1-9]' "$LAST_LOG.err" | tr '\n' ' ')"
  cat "$LAST_LOG.err" >>"$LAST_LOG"
}

run_ustack_loadgen() {  # CASE PORT REQUESTS LIMIT ARGS...
  local name=$1 port=$2 want=$3 limit=$4
  shift 4
  run_ustack_client "$name" "$limit" loadgen --host "$KERNEL_IP" --port "$port" --json --requests "$want" "$@"
  # --stats goes to stderr, the JSON line stays the last line of stdout.
  local out="$LAST_LOG.json"
  grep '^{' "$LAST_LOG" | tail -n 1 >"$out" || true
  loadgen_check "$name" "$out" "$want" "$LAST_SECS" "$LAST_STATUS"
}

run_ustack_loadgen "loadgen/ustack cps 1000 conns -> epoll-server/kernel" "$ECHO_PORT" "$CPS_REQUESTS" 60 \
  --mode cps --connections 8 --size 64
run_ustack_loadgen "loadgen/ustack bulk $BULK_MB MiB -> epoll-server/kernel" "$ECHO_PORT" "$BULK_REQUESTS" 180 \
  --mode bulk --connections 1 --size "$BULK_BLOCK"
run_ustack_loadgen "loadgen/ustack cps 1000 conns -> socat" "$SOCAT_PORT" "$CPS_REQUESTS" 60 \
  --mode cps --connections 8 --size 64
run_ustack_loadgen "loadgen/ustack bulk $BULK_MB MiB -> socat" "$SOCAT_PORT" "$BULK_REQUESTS" 180 \
  --mode bulk --connections 1 --size "$BULK_BLOCK"

# http-fetch on ustack fetches the 10 MB file from python's http.server; sha256 compared.
run_ustack_client "http-fetch/ustack 10 MB <- python http.server" 60 http-fetch --timeout 20 \
  --output "$TMP/fetched.bin" "http://$KERNEL_IP:$PYHTTP_PORT/file.bin"
want_sum=$(sha256sum <"$TMP/www/file.bin" | cut -d' ' -f1)
got_sum=$(sha256sum <"$TMP/fetched.bin" 2>/dev/null | cut -d' ' -f1 || true)
# http-fetch's own figure (from its connect), not the wall time with DPDK's start.
tput=$(sed -n 's/.* in [0-9.]* s (\([0-9.]* MB\/s\)).*/\1/p' "$LAST_LOG" | tail -n 1)
if ((LAST_STATUS == 0)) && [[ "$want_sum" == "$got_sum" ]]; then
  record "http-fetch/ustack 10 MB <- python http.server" 1 "$LAST_SECS" "$tput"
else
  record "http-fetch/ustack 10 MB <- python http.server" 0 "$LAST_SECS" "$tput" \
    "status $LAST_STATUS, sha256 ${got_sum:-none} want $want_sum; $(tail -n 2 "$LAST_LOG" | tr '\n' ' ')"
fi

# ---- summary ----
log "summary (${BULK_MB} MiB bulk, ${CPS_REQUESTS} short connections each way; $((SECONDS - T_START)) s in all):"
width=4
for r in "${RESULTS[@]}"; do c=${r%%|*}; ((${#c} > width)) && width=${#c}; done
{
  printf '%-*s  %-6s %8s  %s\n' "$width" case result seconds throughput
  for r in "${RESULTS[@]}"; do
    IFS='|' read -r c res s t <<<"$r"
    printf '%-*s  %-6s %8s  %s\n' "$width" "$c" "$res" "$s" "$t"
  done
} | tee "$TMP/summary.txt"
if ((FAILED)); then log "FAIL"; exit 1; fi
log "PASS: all ${#RESULTS[@]} cases"
