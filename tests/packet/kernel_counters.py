#!/usr/bin/python3
"""Prints the Linux SNMP counters of a network namespace as "Group.Name value" lines.

Usage: kernel_counters.py NETNS

Reads /proc/net/snmp and /proc/net/netstat inside NETNS (`ip netns exec NETNS cat ...`). Both
files hold pairs of lines, "Ip: Forwarding DefaultTTL ..." then "Ip: 1 64 ..."; they come out as
"Ip.Forwarding 1", "IpExt.InCsumErrors 0", "Udp.InCsumErrors 0", "Icmp.OutEchoReps 2", ...
"""

import subprocess
import sys


def parse(text):
    out = {}
    lines = text.splitlines()
    i = 0
    while i + 1 < len(lines):
        head, _, names = lines[i].partition(":")
        head2, _, values = lines[i + 1].partition(":")
        if head and head == head2:
            for n, v in zip(names.split(), values.split()):
                try:
                    out[f"{head}.{n}"] = int(v)
                except ValueError:
                    pass
            i += 2
        else:
            i += 1
    return out


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    ns = sys.argv[1]
    r = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp", "/proc/net/netstat"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"kernel_counters: cannot read the counters of netns {ns}: {r.stderr.strip()}", file=sys.stderr)
        return 1
    counters = parse(r.stdout)
    for name in sorted(counters):
        print(f"{name} {counters[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
