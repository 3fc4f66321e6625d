#!/usr/bin/python3
"""What the packet tests share: raw-byte views of received frames, the case runner, the context
(interface, addresses, counters, one-shot exchanges) and the Ethernet/IP/counter checks.

test_packets.py (ARP, ICMP, UDP against udp-echo) and test_tcp_packets.py (TCP against
epoll-server) are the programs; each defines a Suite of cases and calls main(suite).
"""

import argparse
import logging
import os
import random
import subprocess
import threading
import time
import traceback

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import (ARP, AsyncSniffer, Ether, checksum, conf, get_if_addr, get_if_hwaddr)  # noqa: E402

conf.verb = 0

REPLY_TIMEOUT = 2.0     # how long a reply that must come may take
SILENCE_TIMEOUT = 1.0   # how long we listen for a reply that must not come
COUNTER_SETTLE = 1.0    # counters may trail the reply a little: re-read until they match, this long

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806


# ---------------------------------------------------------------------------------------------
# Raw-byte helpers: checks are made on the bytes that came off the wire, not on Scapy's rebuild.

def be16(b, off):
    return int.from_bytes(b[off:off + 2], "big")


def be32(b, off):
    return int.from_bytes(b[off:off + 4], "big")


def ip_to_bytes(a):
    return bytes(int(x) for x in a.split("."))


def bytes_to_ip(b):
    return ".".join(str(x) for x in b)


def raw_frame(pkt):
    return bytes(pkt.original) if getattr(pkt, "original", None) else bytes(pkt)


class IpView:
    """The IPv4 header and payload of one raw Ethernet frame (None when it is not sane IPv4)."""

    def __init__(self, frame):
        self.frame = frame
        ip = frame[14:]
        self.raw = ip
        self.version = ip[0] >> 4
        self.ihl = (ip[0] & 0x0F) * 4
        self.tos = ip[1]
        self.total_len = be16(ip, 2)
        self.ident = be16(ip, 4)
        ff = be16(ip, 6)
        self.df = bool(ff & 0x4000)
        self.mf = bool(ff & 0x2000)
        self.frag_offset = (ff & 0x1FFF) * 8
        self.ttl = ip[8]
        self.proto = ip[9]
        self.chksum = be16(ip, 10)
        self.src = bytes_to_ip(ip[12:16])
        self.dst = bytes_to_ip(ip[16:20])
        self.header = ip[:self.ihl]
        self.payload = ip[self.ihl:self.total_len]

    @staticmethod
    def of(frame):
        if len(frame) < 14 + 20 or be16(frame, 12) != ETH_P_IP:
            return None
        v = IpView(frame)
        if v.version != 4 or v.ihl < 20 or v.total_len < v.ihl or len(v.raw) < v.total_len:
            return None
        return v


def l4_checksum_ok(src, dst, proto, segment):
    pseudo = ip_to_bytes(src) + ip_to_bytes(dst) + bytes([0, proto]) + len(segment).to_bytes(2, "big")
    return checksum(pseudo + segment) == 0


def describe(raw):
    """One line about a received frame, with the header fields the checks do not pin down."""
    v = IpView.of(raw)
    if v is None:
        return Ether(raw).summary()
    flags = "".join(n for n, on in (("DF", v.df), ("MF", v.mf)) if on) or "-"
    return (f"{v.src} > {v.dst} proto {v.proto} len {v.total_len} id {v.ident} flags {flags} "
            f"off {v.frag_offset} ttl {v.ttl} tos 0x{v.tos:02x} | {Ether(raw).summary()}")


def mac_str(b):
    return ":".join(f"{x:02x}" for x in b)


# ---------------------------------------------------------------------------------------------
# The tiny runner.

class CaseFailed(Exception):
    pass


class Case:
    def __init__(self, name):
        self.name = name
        self.errors = []
        self.notes = []

    def expect(self, cond, msg):
        if not cond:
            self.errors.append(msg)
        return cond

    def eq(self, what, got, want):
        if got != want:
            self.errors.append(f"{what}: got {got!r}, want {want!r}")
            return False
        return True

    def require(self, cond, msg):
        """Like expect, but ends the case: nothing further can be checked."""
        if not cond:
            self.errors.append(msg)
            raise CaseFailed()


class Ctx:
    def __init__(self, args, counter_table):
        self.iface = args.iface
        self.target_ip = args.target_ip
        self.port = args.port
        self.closed_port = args.closed_port
        self.counters_cmd = args.counters
        self.names = args.names
        self.our_mac = get_if_hwaddr(args.iface).lower()
        self.our_ip = args.our_ip or get_if_addr(args.iface)
        self.other_ip = args.other_ip
        self.expected_target_mac = args.target_mac.lower() if args.target_mac else None
        self.target_mac = None
        self.rng = random.Random(args.seed)
        self.verbose = args.verbose
        self.args = args                    # the suite's own options too
        self.counter_table = counter_table  # case key -> target kind -> {counter name: delta}

    # --- counters ---------------------------------------------------------------------------
    def read_counters(self):
        r = subprocess.run(self.counters_cmd, shell=True, capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise RuntimeError(f"counters command failed ({r.returncode}): {r.stderr.strip()}")
        out = {}
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                try:
                    out[parts[0]] = int(float(parts[1]))
                except ValueError:
                    pass
        if not out:
            raise RuntimeError(f"counters command printed no counters: {r.stdout[:200]!r}")
        if self.names is None:
            if any(k.startswith("ipv4.") for k in out):
                self.names = "ustack"
            elif any(k.startswith("Ip.") for k in out):
                self.names = "kernel"
            else:
                raise RuntimeError("cannot tell the target's kind from its counter names (use --names)")
        return out

    # --- frames -----------------------------------------------------------------------------
    def eth(self, dst=None, ethertype=None):
        e = Ether(src=self.our_mac, dst=dst or self.target_mac)
        if ethertype is not None:
            e.type = ethertype
        return e

    def exchange(self, frames, match, timeout, done=None):
        """Sends `frames`; returns the received frames (raw bytes) for which match(raw) is true,
        collected until done(list) is true or `timeout` has passed.

        One packet socket both sends and listens: it is open before the first frame leaves (no
        reply can be missed), and it does not return our own frames on their way out (a TAP's
        kernel side may even carry the same MAC as the stack behind it)."""
        got = []
        started = threading.Event()
        finished = threading.Event()

        def on_packet(pkt):
            raw = raw_frame(pkt)
            try:
                ok = match(raw)
            except Exception:  # a frame the matcher cannot parse is not the one we wait for
                ok = False
            if ok:
                got.append(raw)
                if self.verbose:
                    print(f"     < {describe(raw)}", flush=True)
                if done is not None and done(got):
                    finished.set()

        sock = conf.L2socket(iface=self.iface, promisc=False)
        try:
            sniffer = AsyncSniffer(opened_socket=sock, prn=on_packet, store=False, started_callback=started.set)
            sniffer.start()
            if not started.wait(5):
                raise RuntimeError("the sniffer did not start")
            for f in (frames if isinstance(frames, list) else [frames]):
                sock.send(f)
            finished.wait(timeout)
            sniffer.stop()
        finally:
            sock.close()
        return got

    def from_target_ipv4(self, raw):
        """Any IPv4 frame the target sends us: each must be the expected reply or nothing."""
        if be16(raw, 12) != ETH_P_IP:
            return False
        v = IpView.of(raw)
        return raw[6:12] == bytes.fromhex(self.target_mac.replace(":", "")) or (v is not None and v.src == self.target_ip)


def check_eth(c, ctx, raw, ethertype):
    c.eq("Ethernet dst", mac_str(raw[0:6]), ctx.our_mac)
    c.eq("Ethernet src", mac_str(raw[6:12]), ctx.target_mac)
    c.eq("EtherType", hex(be16(raw, 12)), hex(ethertype))


def check_ip(c, ctx, v, proto, allow_fragment=False):
    c.eq("IP version", v.version, 4)
    c.expect(v.ihl >= 20, f"IP header length {v.ihl} < 20")
    c.expect(checksum(v.header) == 0, f"IP header checksum 0x{v.chksum:04x} is wrong")
    c.eq("IP src", v.src, ctx.target_ip)
    c.eq("IP dst", v.dst, ctx.our_ip)
    c.eq("IP protocol", v.proto, proto)
    c.expect(v.ttl > 0, "IP TTL is 0")
    c.expect(v.total_len <= 1500, f"IP total length {v.total_len} exceeds the link MTU 1500")
    if not allow_fragment:
        c.expect(not v.mf and v.frag_offset == 0, f"reply is a fragment (MF={int(v.mf)}, offset={v.frag_offset})")


def check_counters(c, ctx, key, before, settle=COUNTER_SETTLE):
    want = ctx.counter_table[key][ctx.names]
    if not want:
        c.notes.append(f"no {ctx.names} counter for this case")
        return
    deadline = time.monotonic() + settle
    while True:
        after = ctx.read_counters()
        bad = []
        for name, delta in want.items():
            if name not in after or name not in before:
                bad.append(f"counter {name} is not reported")
                continue
            got = after[name] - before[name]
            if got != delta:
                bad.append(f"counter {name} changed by {got}, want {delta}")
        if not bad or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    c.errors.extend(bad)
    if not bad:
        c.notes.append(", ".join(f"{n} +{d}" for n, d in want.items()))



def expect_silence(c, ctx, key, frames, what):
    """Sends a frame that must get no reply; checks the silence and the counters."""
    before = ctx.read_counters()
    got = ctx.exchange(frames, ctx.from_target_ipv4, SILENCE_TIMEOUT)
    for raw in got:
        c.errors.append(f"{what}: unexpected reply {Ether(raw).summary()}")
    check_counters(c, ctx, key, before)


def corrupt16(good, valid):
    """A 16-bit value != good for which valid(value) is false and that is not 0."""
    for delta in (0x5A5A, 0x0101, 0x1234, 0x0F0F):
        bad = good ^ delta
        if bad != 0 and not valid(bad):
            return bad
    raise AssertionError("cannot corrupt the checksum")




def arp_lookup(ctx):
    """The target's MAC from an ARP request (for suites without an ARP case of their own)."""
    req = Ether(src=ctx.our_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=ctx.our_mac, psrc=ctx.our_ip, hwdst="00:00:00:00:00:00", pdst=ctx.target_ip)

    def match(raw):
        return be16(raw, 12) == ETH_P_ARP and be16(raw, 14 + 6) == 2 and bytes_to_ip(raw[14 + 14:14 + 18]) == ctx.target_ip

    got = ctx.exchange(req, match, REPLY_TIMEOUT, done=lambda g: True)
    return mac_str(got[0][14 + 8:14 + 14]) if got else None


# ---------------------------------------------------------------------------------------------
# The program: a suite of cases, run in order.

class Suite:
    """The cases of one test program, in order. `gate` names the case that learns the target's MAC
    (ARP) and always runs first; without one the MAC comes from --target-mac or an ARP lookup.
    `counters` maps a case key to {target kind: {counter name: exact delta}} for check_counters;
    names absent from a kind's dict are not checked for that kind, and a delta of 0 says "not this
    one"."""

    def __init__(self, doc, counters, gate=None, add_args=None, banner=""):
        self.doc = doc
        self.counters = counters
        self.gate = gate
        self.add_args = add_args  # function(ArgumentParser): the suite's own options
        self.banner = banner      # what --port serves, for the first line printed
        self.cases = []

    def case(self, fn):
        self.cases.append(fn)
        return fn


def main(suite):
    ap = argparse.ArgumentParser(description=suite.doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iface", required=True, help="interface on the target's link (ust0)")
    ap.add_argument("--target-ip", required=True, help="the target's IPv4 address")
    ap.add_argument("--port", type=int, required=True, help="the target's echo port")
    ap.add_argument("--counters", required=True, help="shell command printing the target's counters as 'name value' lines")
    ap.add_argument("--names", choices=["ustack", "kernel"], help="counter names (default: guessed from CMD's output)")
    ap.add_argument("--our-ip", help="our address (default: the address of --iface)")
    ap.add_argument("--target-mac", help="the target's MAC, when known: the ARP reply must carry it")
    ap.add_argument("--other-ip", default="198.18.0.77", help="an address on the link that nobody has")
    ap.add_argument("--closed-port", type=int, default=9, help="a port the target does not serve")
    ap.add_argument("--seed", type=int, default=None, help="random seed (payloads, ids, ports)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every reply frame")
    ap.add_argument("-k", "--only", action="append", help="run only the cases with this name (repeatable)")
    if suite.add_args:
        suite.add_args(ap)
    args = ap.parse_args()
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big")

    ctx = Ctx(args, suite.counters)
    print(f"packet tests: iface {ctx.iface} ({ctx.our_mac}, {ctx.our_ip}) -> target {ctx.target_ip}, "
          f"{suite.banner}port {ctx.port}, seed {args.seed}", flush=True)
    try:
        ctx.read_counters()
        print(f"counters: {ctx.names} names", flush=True)
    except Exception as e:  # every case will fail on this too; say it once, clearly
        print(f"counters: {e}", flush=True)
    if suite.gate is None:
        ctx.target_mac = ctx.expected_target_mac or arp_lookup(ctx)

    results = []
    t0 = time.monotonic()
    for fn in suite.cases:
        if args.only and fn.__name__ not in args.only and fn is not suite.gate:
            continue
        c = Case(fn.__name__)
        start = time.monotonic()
        try:
            if fn is not suite.gate and ctx.target_mac is None:
                c.require(False, "target MAC unknown (" + ("the ARP case failed)" if suite.gate else "no ARP reply)"))
            fn(c, ctx)
        except CaseFailed:
            pass
        except Exception as e:
            c.errors.append(f"exception: {e!r}")
            traceback.print_exc()
        took = time.monotonic() - start
        status = "FAIL" if c.errors else "PASS"
        results.append((c.name, status))
        note = f" ({'; '.join(c.notes)})" if c.notes and not c.errors else ""
        print(f"{status} {c.name} [{took:.2f}s]{note}", flush=True)
        for e in c.errors:
            print(f"     - {e}", flush=True)

    failed = [n for n, s in results if s == "FAIL"]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed, {time.monotonic() - t0:.1f}s"
          + (f": {' '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0
