#!/usr/bin/env bash
# Runs packetdrill's TCP scripts (gtests/net/tcp of a google/packetdrill checkout) against
# ustack_packetdrill.so and prints, per folder, how many pass.
#
#   run_suite.sh PACKETDRILL_CHECKOUT PACKETDRILL_BINARY ADAPTER_SO [RESULTS_DIR]
#
# It never fetches or builds packetdrill (README.md here says how to). The scripts are copied to
# RESULTS_DIR/tcp and adjusted there, never in the checkout:
#   - every shell command event (`...`: ../common/defaults.sh, sysctl, set_sysctls.py, tc, ip,
#     ethtool, nstat) becomes `true`: they configure Linux, which is not the stack under test;
#   - every Python code event (%{ ... }%, the tcpi_* assertions on TCP_INFO) becomes `true` too:
#     packetdrill reads TCP_INFO with a real getsockopt(2) that an ustack socket cannot answer;
#   - script-level --local_ip/--remote_ip options are dropped: the adapter has one address.
# An event that is neutralised keeps its time, so the events after it keep theirs.
#
# USTACK_PD_SO_FLAGS, if set, is appended to the adapter's --so_flags (e.g. max_buffer=31457280).
# RESULTS_DIR (default: a temporary directory, removed at exit) receives the adjusted scripts
# (tcp/, to re-run one by hand), one log per script and results.tsv (folder, script,
# PASS/FAIL/TIMEOUT, packetdrill's first error line).
#
# Never run the unadjusted scripts with --so_filename outside a network namespace: packetdrill
# runs their shell commands on this machine, and defaults.sh rewrites its TCP sysctls.

set -euo pipefail

if [[ $# -lt 3 ]]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
checkout=$(realpath "$1")
packetdrill=$(realpath "$2")
adapter=$(realpath "$3")
results=${4:-}

[[ -d "$checkout/gtests/net/tcp" ]] || { echo "no gtests/net/tcp in $checkout" >&2; exit 2; }
[[ -x "$packetdrill" ]] || { echo "$packetdrill is not an executable" >&2; exit 2; }
[[ -f "$adapter" ]] || { echo "$adapter does not exist" >&2; exit 2; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
if [[ -z "$results" ]]; then
  results="$scratch/results"
fi
mkdir -p "$results"
: > "$results/results.tsv"
mkdir -p "$results/logs"

scripts="$results/tcp"
rm -rf "$scripts"
cp -r "$checkout/gtests/net/tcp" "$scripts"
# defaults.sh is a symlink into gtests/net/common; the copy gets a no-op of its own.
rm -f "$scripts/common/defaults.sh"
printf '#!/bin/sh\nexit 0\n' > "$scripts/common/defaults.sh"
chmod +x "$scripts/common/defaults.sh"

/usr/bin/python3 - "$scripts" <<'EOF'
import pathlib, re, sys
for path in pathlib.Path(sys.argv[1]).rglob('*.pkt'):
    text = path.read_text()
    text = re.sub(r'%\{.*?\}%', '`true`', text, flags=re.S)   # code events: TCP_INFO assertions
    text = re.sub(r'`[^`]*`', '`true`', text, flags=re.S)      # shell commands: Linux configuration
    text = re.sub(r'^[ \t]*--(local_ip|remote_ip)=\S*[ \t]*$', '', text, flags=re.M)
    path.write_text(text)
EOF

# Addresses in 198.18.0.0/15 (RFC 2544, benchmarking); the adapter's default local address.
args=(
  --so_filename="$adapter"
  --so_flags=local_ip=198.18.0.2,prefix=24${USTACK_PD_SO_FLAGS:+,$USTACK_PD_SO_FLAGS}
  --ip_version=ipv4
  --local_ip=198.18.0.2
  --remote_ip=198.18.0.1
  --gateway_ip=198.18.0.1
  --netmask_ip=255.255.255.0
  --send_omit_free
  # What packetdrill's run_all.py defines for IPv4 runs.
  -D TFO_COOKIE=3021b9d889017eeb
  -D CODE=host_unreachable
  -D CMSG_LEVEL_IP=SOL_IP
  -D CMSG_TYPE_RECVERR=IP_RECVERR
)

cd "$scripts"
while IFS= read -r script; do
  script=${script#./}
  folder=$(dirname "$script")
  log="$results/logs/${script//\//__}.log"
  rc=0
  (cd "$folder" && timeout 120 "$packetdrill" "${args[@]}" "$(basename "$script")") > "$log" 2>&1 || rc=$?
  case $rc in
    0) status=PASS ;;
    124) status=TIMEOUT ;;  # timeout(1) had to stop it
    *) status=FAIL ;;
  esac
  reason=$(grep -m1 -E 'error|Error|assert|Bad|bad|unknown|expected|timing' "$log" | tr '\t' ' ' | cut -c1-300 || true)
  printf '%s\t%s\t%s\t%s\n' "$folder" "$(basename "$script")" "$status" "$reason" >> "$results/results.tsv"
  printf '%-8s %s\n' "$status" "$script"
done < <(find . -name '*.pkt' | sort)

echo
/usr/bin/python3 - "$results/results.tsv" <<'EOF'
import collections, sys
rows = [l.rstrip('\n').split('\t') for l in open(sys.argv[1]) if l.strip()]
by = collections.OrderedDict()
for folder, _, status, _ in rows:
    by.setdefault(folder, collections.Counter())[status] += 1
print(f"{'folder':28} {'pass':>5} {'total':>6}")
for folder, c in by.items():
    print(f"{folder:28} {c['PASS']:5d} {sum(c.values()):6d}")
total = collections.Counter(s for _, _, s, _ in rows)
print(f"{'all':28} {total['PASS']:5d} {len(rows):6d}")
EOF
echo "adjusted scripts (tcp/), logs/ and results.tsv: $results"
