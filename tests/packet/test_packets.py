#!/usr/bin/python3
"""Packet tests: crafted Ethernet frames, sent with Scapy, and every field of the replies checked.

Usage (as root, inside the prober's network namespace; tests/packet/run.sh sets it all up):
  test_packets.py --iface ust0 --target-ip 198.18.0.2 --port 7777 --counters CMD

The target is a host at --target-ip on the link behind --iface that answers ARP and ICMP echo and
runs a UDP echo service on --port: ustack, or the Linux kernel as the oracle. CMD is a shell
command printing the target's counters as "name value" lines; each case compares them before and
after with the names of the target's kind (ustack's "ipv4.rx_bad_checksum" or Linux's
"IpExt.InCsumErrors"; detected from the names CMD prints, or --names).

Each case prints PASS or FAIL (with every mismatch); the exit status is 1 when any case fails.
A reply that is missing is a failure, and so is a reply to a frame that must get none.
"""

import argparse
import logging
import os
import random
import subprocess
import sys
import threading
import time
import traceback

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import (ARP, ICMP, IP, UDP, AsyncSniffer, Ether, Raw, checksum, conf,  # noqa: E402
                       fragment, get_if_addr, get_if_hwaddr)

conf.verb = 0

REPLY_TIMEOUT = 2.0     # how long a reply that must come may take
SILENCE_TIMEOUT = 1.0   # how long we listen for a reply that must not come
COUNTER_SETTLE = 1.0    # counters may trail the reply a little: re-read until they match, this long

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
OTHER_MAC = "02:00:5e:00:53:99"  # locally administered unicast: nobody's

# Counter changes each case expects, by target kind: name -> exact delta. Names absent from a
# kind's dict are not checked for that kind (Linux has no counter for an ARP reply or for a frame
# to another MAC). A delta of 0 says "not this one": the frame must be counted once, in the right
# place.
COUNTERS = {
    "arp_reply": {"ustack": {"arp.tx_replies": 1}, "kernel": {}},
    "arp_other_ip": {"ustack": {"arp.tx_replies": 0}, "kernel": {}},
    "ping": {"ustack": {"icmp.tx_echo_replies": 1}, "kernel": {"Icmp.OutEchoReps": 1}},
    "fragmented_ping": {"ustack": {"ipv4.reasm_ok": 1, "icmp.tx_echo_replies": 1},
                        "kernel": {"Ip.ReasmOKs": 1, "Icmp.OutEchoReps": 1}},
    "udp_echo": {"ustack": {"udp.rx_delivered": 1, "udp.tx_datagrams": 1},
                 "kernel": {"Udp.InDatagrams": 1, "Udp.OutDatagrams": 1}},
    "fragmented_udp_echo": {"ustack": {"ipv4.reasm_ok": 1, "udp.rx_delivered": 1, "udp.tx_datagrams": 1},
                            "kernel": {"Ip.ReasmOKs": 1, "Udp.InDatagrams": 1, "Udp.OutDatagrams": 1}},
    "unknown_protocol": {"ustack": {"ipv4.rx_unknown_protocol": 1, "icmp.tx_dest_unreachable": 1},
                         "kernel": {"Ip.InUnknownProtos": 1, "Icmp.OutDestUnreachs": 1}},
    "udp_closed_port": {"ustack": {"udp.rx_no_port": 1, "icmp.tx_dest_unreachable": 1},
                        "kernel": {"Udp.NoPorts": 1, "Icmp.OutDestUnreachs": 1}},
    "bad_ip_checksum": {"ustack": {"ipv4.rx_bad_checksum": 1, "ipv4.rx_delivered": 0},
                        "kernel": {"IpExt.InCsumErrors": 1, "Ip.InHdrErrors": 1, "Ip.InDelivers": 0}},
    "truncated_ip": {"ustack": {"ipv4.rx_truncated": 1, "ipv4.rx_bad_checksum": 0, "ipv4.rx_delivered": 0},
                     "kernel": {"IpExt.InTruncatedPkts": 1, "IpExt.InCsumErrors": 0, "Ip.InDelivers": 0}},
    "bad_ihl": {"ustack": {"ipv4.rx_bad_header_length": 1, "ipv4.rx_bad_checksum": 0, "ipv4.rx_delivered": 0},
                "kernel": {"Ip.InHdrErrors": 1, "IpExt.InCsumErrors": 0, "Ip.InDelivers": 0}},
    "bad_ip_version": {"ustack": {"ipv4.rx_bad_version": 1, "ipv4.rx_delivered": 0},
                       "kernel": {"Ip.InHdrErrors": 1, "IpExt.InCsumErrors": 0, "Ip.InDelivers": 0}},
    "bad_icmp_checksum": {"ustack": {"icmp.rx_bad_checksum": 1, "icmp.tx_echo_replies": 0},
                          "kernel": {"Icmp.InCsumErrors": 1, "Icmp.OutEchoReps": 0}},
    "bad_udp_checksum": {"ustack": {"udp.rx_bad_checksum": 1, "udp.rx_delivered": 0, "udp.tx_datagrams": 0},
                         "kernel": {"Udp.InCsumErrors": 1, "Udp.InDatagrams": 0, "Udp.OutDatagrams": 0}},
    "udp_length_beyond_ip": {"ustack": {"udp.rx_malformed": 1, "udp.rx_bad_checksum": 0, "udp.rx_delivered": 0},
                             "kernel": {"Udp.InErrors": 1, "Udp.InCsumErrors": 0, "Udp.InDatagrams": 0}},
    "frame_to_other_mac": {"ustack": {"eth.rx_not_for_us": 1, "ipv4.rx_packets": 0}, "kernel": {}},
    "ping_after_malformed": {"ustack": {"icmp.tx_echo_replies": 1}, "kernel": {"Icmp.OutEchoReps": 1}},
    "udp_echo_after_malformed": {"ustack": {"udp.tx_datagrams": 1}, "kernel": {"Udp.OutDatagrams": 1}},
}


# ---------------------------------------------------------------------------------------------
# Raw-byte helpers: checks are made on the bytes that came off the wire, not on Scapy's rebuild.

def be16(b, off):
    return int.from_bytes(b[off:off + 2], "big")


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
    def __init__(self, args):
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
    want = COUNTERS[key][ctx.names]
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


# ---------------------------------------------------------------------------------------------
# Echo helpers shared by several cases.

def ping_case(c, ctx, key, payload_len=56):
    ident, seq = ctx.rng.randrange(1, 0xFFFF), ctx.rng.randrange(1, 0xFFFF)
    payload = bytes(ctx.rng.getrandbits(8) for _ in range(payload_len))
    before = ctx.read_counters()
    frame = ctx.eth() / IP(src=ctx.our_ip, dst=ctx.target_ip, ttl=64) / ICMP(type=8, id=ident, seq=seq) / Raw(payload)

    def match(raw):
        v = IpView.of(raw)
        return v is not None and v.src == ctx.target_ip and v.proto == 1 and v.payload[:1] == b"\x00" \
            and be16(v.payload, 4) == ident

    got = ctx.exchange(frame, match, REPLY_TIMEOUT, done=lambda g: True)
    c.require(got, f"no ICMP echo reply (id {ident}, seq {seq}) within {REPLY_TIMEOUT}s")
    raw = got[0]
    v = IpView.of(raw)
    check_eth(c, ctx, raw, ETH_P_IP)
    check_ip(c, ctx, v, 1)
    icmp = v.payload
    c.eq("ICMP type", icmp[0], 0)
    c.eq("ICMP code", icmp[1], 0)
    c.expect(checksum(icmp) == 0, f"ICMP checksum 0x{be16(icmp, 2):04x} is wrong")
    c.eq("ICMP id", be16(icmp, 4), ident)
    c.eq("ICMP seq", be16(icmp, 6), seq)
    c.expect(icmp[8:] == payload, f"ICMP payload differs: {len(icmp) - 8} bytes back, {len(payload)} sent")
    c.expect(not v.df, "echo reply has DF set (Linux's icmp_reply leaves it clear)")
    check_counters(c, ctx, key, before)


def udp_echo_case(c, ctx, key, payload_len=100):
    sport = ctx.rng.randrange(20000, 60000)
    payload = bytes(ctx.rng.getrandbits(8) for _ in range(payload_len))
    before = ctx.read_counters()
    frame = ctx.eth() / IP(src=ctx.our_ip, dst=ctx.target_ip) / UDP(sport=sport, dport=ctx.port) / Raw(payload)

    def match(raw):
        v = IpView.of(raw)
        return v is not None and v.src == ctx.target_ip and v.proto == 17 and be16(v.payload, 2) == sport

    got = ctx.exchange(frame, match, REPLY_TIMEOUT, done=lambda g: True)
    c.require(got, f"no UDP echo from port {ctx.port} to port {sport} within {REPLY_TIMEOUT}s")
    raw = got[0]
    v = IpView.of(raw)
    check_eth(c, ctx, raw, ETH_P_IP)
    check_ip(c, ctx, v, 17)
    udp = v.payload
    c.eq("UDP source port", be16(udp, 0), ctx.port)
    c.eq("UDP destination port", be16(udp, 2), sport)
    c.eq("UDP length", be16(udp, 4), 8 + len(payload))
    c.eq("UDP length vs IP payload", be16(udp, 4), len(udp))
    c.expect(be16(udp, 6) != 0, "UDP checksum is 0 (absent); Linux always sends one")
    c.expect(be16(udp, 6) == 0 or l4_checksum_ok(v.src, v.dst, 17, udp), f"UDP checksum 0x{be16(udp, 6):04x} is wrong")
    c.expect(udp[8:] == payload, f"UDP payload differs ({len(udp) - 8} bytes back, {len(payload)} sent)")
    check_counters(c, ctx, key, before)


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


# ---------------------------------------------------------------------------------------------
# The cases, in order.

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


@case
def arp_reply(c, ctx):
    before = ctx.read_counters()
    req = Ether(src=ctx.our_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=ctx.our_mac, psrc=ctx.our_ip, hwdst="00:00:00:00:00:00", pdst=ctx.target_ip)

    def match(raw):
        return be16(raw, 12) == ETH_P_ARP and be16(raw, 14 + 6) == 2

    got = ctx.exchange(req, match, REPLY_TIMEOUT, done=lambda g: True)
    c.require(got, f"no ARP reply for {ctx.target_ip} within {REPLY_TIMEOUT}s")
    raw = got[0]
    a = raw[14:]
    sender_mac = mac_str(a[8:14])
    ctx.target_mac = sender_mac
    c.eq("Ethernet dst", mac_str(raw[0:6]), ctx.our_mac)
    c.eq("Ethernet src (= ARP sender MAC)", mac_str(raw[6:12]), sender_mac)
    c.eq("EtherType", hex(be16(raw, 12)), hex(ETH_P_ARP))
    c.eq("ARP hardware type", be16(a, 0), 1)
    c.eq("ARP protocol type", hex(be16(a, 2)), hex(ETH_P_IP))
    c.eq("ARP hardware length", a[4], 6)
    c.eq("ARP protocol length", a[5], 4)
    c.eq("ARP op", be16(a, 6), 2)
    c.expect(not (a[8] & 1) and sender_mac != "00:00:00:00:00:00", f"ARP sender MAC {sender_mac} is not a unicast MAC")
    if ctx.expected_target_mac:
        c.eq("ARP sender MAC (the target's own MAC)", sender_mac, ctx.expected_target_mac)
    c.expect(sender_mac != ctx.our_mac, f"ARP sender MAC {sender_mac} is our own MAC")
    c.eq("ARP sender IP", bytes_to_ip(a[14:18]), ctx.target_ip)
    c.eq("ARP target MAC", mac_str(a[18:24]), ctx.our_mac)
    c.eq("ARP target IP", bytes_to_ip(a[24:28]), ctx.our_ip)
    check_counters(c, ctx, "arp_reply", before)


@case
def arp_other_ip(c, ctx):
    before = ctx.read_counters()
    req = Ether(src=ctx.our_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=ctx.our_mac, psrc=ctx.our_ip, hwdst="00:00:00:00:00:00", pdst=ctx.other_ip)

    def match(raw):
        return be16(raw, 12) == ETH_P_ARP and be16(raw, 14 + 6) == 2

    got = ctx.exchange(req, match, SILENCE_TIMEOUT)
    for raw in got:
        c.errors.append(f"unexpected ARP reply for {ctx.other_ip}: {Ether(raw).summary()}")
    check_counters(c, ctx, "arp_other_ip", before)


@case
def ping(c, ctx):
    ping_case(c, ctx, "ping")


def fragmented_exchange(c, ctx, dgram, fragsize, order, first_fragment_is_reply):
    """Sends `dgram` cut into fragments of `fragsize` bytes, in `order`; collects the reply (one
    frame or several fragments, all under one IP id) and returns its reassembled L4 bytes after
    checking every fragment's Ethernet and IP header."""
    frags = fragment(dgram, fragsize=fragsize)
    c.require(len(frags) == len(order), f"test bug: {len(frags)} fragments, want {len(order)}")
    frames = [ctx.eth() / frags[i] for i in order]
    proto = dgram.proto
    pieces = {}  # offset -> IpView, of the reply's IP id
    reply_id = []

    def reassembled():
        data, off = b"", 0
        while off in pieces:
            v = pieces[off]
            data += v.payload
            if not v.mf:
                return data
            if not v.payload:
                return None
            off += len(v.payload)
        return None

    def match(raw):
        v = IpView.of(raw)
        if v is None or v.src != ctx.target_ip or v.proto != proto:
            return False
        if v.frag_offset == 0 and not first_fragment_is_reply(v.payload):
            return False
        return not reply_id or v.ident == reply_id[0]

    def done(got):
        v = IpView.of(got[-1])
        if v.frag_offset == 0 and not reply_id:
            reply_id.append(v.ident)
        pieces[v.frag_offset] = v
        return bool(reply_id) and reassembled() is not None

    got = ctx.exchange(frames, match, REPLY_TIMEOUT, done=done)
    what = f"a {len(bytes(dgram))}-byte datagram sent as {len(order)} fragments in the order {order}"
    c.require(got, f"no reply to {what} within {REPLY_TIMEOUT}s")
    if reply_id:  # fragments of another datagram (not the reply's id) do not count
        for off in [o for o, v in pieces.items() if v.ident != reply_id[0]]:
            del pieces[off]
    whole = reassembled()
    c.require(whole is not None,
              f"the reply to {what} does not reassemble: got offsets {sorted(pieces)} "
              f"(MF {[int(pieces[o].mf) for o in sorted(pieces)]})")
    for off in sorted(pieces):
        v = pieces[off]
        check_eth(c, ctx, v.frame, ETH_P_IP)
        check_ip(c, ctx, v, proto, allow_fragment=True)
        if v.mf:
            c.expect(len(v.payload) % 8 == 0, f"fragment at {off}: {len(v.payload)} bytes, not a multiple of 8")
    c.notes.append(f"reply in {len(pieces)} fragment(s)")
    return whole, pieces[0]


@case
def fragmented_ping(c, ctx):
    ident, seq = ctx.rng.randrange(1, 0xFFFF), ctx.rng.randrange(1, 0xFFFF)
    payload = bytes(ctx.rng.getrandbits(8) for _ in range(3000))
    before = ctx.read_counters()
    dgram = IP(src=ctx.our_ip, dst=ctx.target_ip, id=ctx.rng.randrange(1, 0xFFFF)) / ICMP(type=8, id=ident, seq=seq) / Raw(payload)
    whole, _ = fragmented_exchange(c, ctx, dgram, 1024, [2, 0, 1],
                                   lambda l4: l4[:1] == b"\x00" and be16(l4, 4) == ident)
    c.eq("ICMP type", whole[0], 0)
    c.eq("ICMP code", whole[1], 0)
    c.expect(checksum(whole) == 0, f"ICMP checksum 0x{be16(whole, 2):04x} (over the reassembled reply) is wrong")
    c.eq("ICMP id", be16(whole, 4), ident)
    c.eq("ICMP seq", be16(whole, 6), seq)
    c.eq("reassembled ICMP length", len(whole), 8 + len(payload))
    c.expect(whole[8:] == payload, "ICMP payload of the reassembled reply differs from the one sent")
    check_counters(c, ctx, "fragmented_ping", before)


@case
def udp_echo(c, ctx):
    udp_echo_case(c, ctx, "udp_echo")


@case
def fragmented_udp_echo(c, ctx):
    sport = ctx.rng.randrange(20000, 60000)
    payload = bytes(ctx.rng.getrandbits(8) for _ in range(2000))
    before = ctx.read_counters()
    dgram = IP(src=ctx.our_ip, dst=ctx.target_ip, id=ctx.rng.randrange(1, 0xFFFF)) / UDP(sport=sport, dport=ctx.port) / Raw(payload)
    whole, first = fragmented_exchange(c, ctx, dgram, 1200, [1, 0], lambda l4: be16(l4, 2) == sport)
    c.eq("UDP source port", be16(whole, 0), ctx.port)
    c.eq("UDP destination port", be16(whole, 2), sport)
    c.eq("UDP length", be16(whole, 4), 8 + len(payload))
    c.eq("UDP length vs reassembled payload", be16(whole, 4), len(whole))
    c.expect(be16(whole, 6) != 0, "UDP checksum is 0 (absent); Linux always sends one")
    c.expect(be16(whole, 6) == 0 or l4_checksum_ok(first.src, first.dst, 17, whole),
             f"UDP checksum 0x{be16(whole, 6):04x} (over the reassembled datagram) is wrong")
    c.expect(whole[8:] == payload, "UDP payload of the reassembled echo differs from the one sent")
    check_counters(c, ctx, "fragmented_udp_echo", before)


def icmp_error_case(c, ctx, key, dgram, code, what):
    """Sends `dgram`; the answer must be one ICMP destination unreachable with `code` that quotes
    the datagram's IP header and (at least) the next 8 bytes, unchanged."""
    before = ctx.read_counters()
    sent = bytes(dgram)

    def match(raw):
        v = IpView.of(raw)
        return v is not None and v.src == ctx.target_ip and v.proto == 1 and v.payload[:1] == b"\x03"

    got = ctx.exchange(ctx.eth() / dgram, match, REPLY_TIMEOUT, done=lambda g: True)
    c.require(got, f"no ICMP destination unreachable for {what} within {REPLY_TIMEOUT}s")
    raw = got[0]
    v = IpView.of(raw)
    check_eth(c, ctx, raw, ETH_P_IP)
    check_ip(c, ctx, v, 1)
    icmp = v.payload
    c.eq("ICMP type", icmp[0], 3)
    c.eq("ICMP code", icmp[1], code)
    c.expect(checksum(icmp) == 0, f"ICMP checksum 0x{be16(icmp, 2):04x} is wrong")
    c.eq("ICMP unused field", icmp[4:8].hex(), "00000000")
    c.eq("IP TOS of the error (precedence: internetwork control)", hex(v.tos), hex(0xC0 | (sent[1] & 0x1E)))
    quoted = icmp[8:]
    c.expect(len(quoted) >= 28, f"quote is {len(quoted)} bytes, less than the IP header + 8")
    c.eq("quoted IP header", quoted[:20].hex(), sent[:20].hex())
    c.eq("quoted first 8 bytes after the IP header", quoted[20:28].hex(), sent[20:28].hex())
    c.expect(sent.startswith(quoted), "the quote is not a prefix of the datagram sent")
    c.expect(v.total_len <= 576, f"ICMP error is {v.total_len} bytes, more than 576")
    check_counters(c, ctx, key, before)


@case
def udp_closed_port(c, ctx):
    sport = ctx.rng.randrange(20000, 60000)
    payload = b"closed port? " + bytes(ctx.rng.getrandbits(8) for _ in range(19))
    dgram = IP(src=ctx.our_ip, dst=ctx.target_ip, id=ctx.rng.randrange(1, 0xFFFF)) / UDP(sport=sport, dport=ctx.closed_port) / Raw(payload)
    icmp_error_case(c, ctx, "udp_closed_port", dgram, 3, f"UDP to closed port {ctx.closed_port}")


@case
def unknown_protocol(c, ctx):
    # 253: "use for experimentation and testing" (RFC 3692); no stack serves it.
    payload = b"protocol 253 " + bytes(ctx.rng.getrandbits(8) for _ in range(27))
    dgram = IP(src=ctx.our_ip, dst=ctx.target_ip, id=ctx.rng.randrange(1, 0xFFFF), proto=253) / Raw(payload)
    icmp_error_case(c, ctx, "unknown_protocol", dgram, 2, "IP protocol 253")


@case
def bad_ip_checksum(c, ctx):
    pkt = IP(bytes(IP(src=ctx.our_ip, dst=ctx.target_ip) / ICMP(type=8, id=0x4242, seq=1) / Raw(b"bad ip checksum" * 3)))
    good = pkt.chksum
    hdr = bytearray(bytes(pkt)[:20])

    def valid(x):
        hdr[10:12] = x.to_bytes(2, "big")
        return checksum(bytes(hdr)) == 0

    pkt.chksum = corrupt16(good, valid)
    expect_silence(c, ctx, "bad_ip_checksum", ctx.eth() / pkt, f"ping with IP checksum 0x{pkt.chksum:04x} (right: 0x{good:04x})")


@case
def truncated_ip(c, ctx):
    body = ICMP(type=8, id=0x4243, seq=1) / Raw(b"truncated" * 8)
    real = 20 + len(bytes(body))
    pkt = IP(src=ctx.our_ip, dst=ctx.target_ip, len=real + 100) / body  # valid header checksum over len
    frame = ctx.eth() / pkt
    c.require(len(bytes(frame)) == 14 + real, "test bug: frame length")
    expect_silence(c, ctx, "truncated_ip", frame, f"IP total length {real + 100}, {real} bytes present")


@case
def bad_ihl(c, ctx):
    # ihl=4 (16 bytes), the header checksum valid over those 16 bytes.
    pkt = IP(src=ctx.our_ip, dst=ctx.target_ip, ihl=4) / ICMP(type=8, id=0x4244, seq=1) / Raw(b"bad ihl" * 8)
    raw = bytes(pkt)
    c.require(raw[0] == 0x44, f"test bug: first byte 0x{raw[0]:02x}")
    expect_silence(c, ctx, "bad_ihl", ctx.eth(ethertype=ETH_P_IP) / Raw(raw), "IPv4 header with IHL 4")


@case
def bad_ip_version(c, ctx):
    pkt = IP(src=ctx.our_ip, dst=ctx.target_ip, version=6) / ICMP(type=8, id=0x4245, seq=1) / Raw(b"bad version" * 6)
    raw = bytes(pkt)
    c.require(raw[0] == 0x65, f"test bug: first byte 0x{raw[0]:02x}")
    expect_silence(c, ctx, "bad_ip_version", ctx.eth(ethertype=ETH_P_IP) / Raw(raw),
                   "IPv4 EtherType, IP version 6 in the header")


@case
def bad_icmp_checksum(c, ctx):
    pkt = IP(bytes(IP(src=ctx.our_ip, dst=ctx.target_ip) / ICMP(type=8, id=0x4246, seq=1) / Raw(b"bad icmp checksum" * 3)))
    good = pkt[ICMP].chksum
    icmp = bytearray(bytes(pkt[ICMP]))

    def valid(x):
        icmp[2:4] = x.to_bytes(2, "big")
        return checksum(bytes(icmp)) == 0

    pkt[ICMP].chksum = corrupt16(good, valid)
    expect_silence(c, ctx, "bad_icmp_checksum", ctx.eth() / pkt,
                   f"ping with ICMP checksum 0x{pkt[ICMP].chksum:04x} (right: 0x{good:04x})")


@case
def bad_udp_checksum(c, ctx):
    sport = ctx.rng.randrange(20000, 60000)
    pkt = IP(bytes(IP(src=ctx.our_ip, dst=ctx.target_ip) / UDP(sport=sport, dport=ctx.port) / Raw(b"must not be echoed" * 3)))
    good = pkt[UDP].chksum
    seg = bytearray(bytes(pkt[UDP]))

    def valid(x):
        seg[6:8] = x.to_bytes(2, "big")
        return l4_checksum_ok(ctx.our_ip, ctx.target_ip, 17, bytes(seg))

    pkt[UDP].chksum = corrupt16(good, valid)
    expect_silence(c, ctx, "bad_udp_checksum", ctx.eth() / pkt,
                   f"UDP echo request with checksum 0x{pkt[UDP].chksum:04x} (right: 0x{good:04x})")


@case
def udp_length_beyond_ip(c, ctx):
    sport = ctx.rng.randrange(20000, 60000)
    data = b"udp length too long" * 3
    # UDP length says 40 bytes more than the IP payload holds; the checksum is right for the bytes.
    pkt = IP(src=ctx.our_ip, dst=ctx.target_ip) / UDP(sport=sport, dport=ctx.port, len=8 + len(data) + 40) / Raw(data)
    expect_silence(c, ctx, "udp_length_beyond_ip", ctx.eth() / pkt, "UDP length 40 bytes beyond the IP payload")


@case
def frame_to_other_mac(c, ctx):
    pkt = IP(src=ctx.our_ip, dst=ctx.target_ip) / ICMP(type=8, id=0x4247, seq=1) / Raw(b"not your MAC" * 4)
    expect_silence(c, ctx, "frame_to_other_mac", Ether(src=ctx.our_mac, dst=OTHER_MAC) / pkt,
                   f"a valid ping to Ethernet {OTHER_MAC}")


@case
def ping_after_malformed(c, ctx):
    ping_case(c, ctx, "ping_after_malformed")


@case
def udp_echo_after_malformed(c, ctx):
    udp_echo_case(c, ctx, "udp_echo_after_malformed")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iface", required=True, help="interface on the target's link (ust0)")
    ap.add_argument("--target-ip", required=True, help="the target's IPv4 address")
    ap.add_argument("--port", type=int, required=True, help="the target's UDP echo port")
    ap.add_argument("--counters", required=True, help="shell command printing the target's counters as 'name value' lines")
    ap.add_argument("--names", choices=["ustack", "kernel"], help="counter names (default: guessed from CMD's output)")
    ap.add_argument("--our-ip", help="our address (default: the address of --iface)")
    ap.add_argument("--target-mac", help="the target's MAC, when known: the ARP reply must carry it")
    ap.add_argument("--other-ip", default="198.18.0.77", help="an address on the link that nobody has")
    ap.add_argument("--closed-port", type=int, default=9, help="a UDP port the target does not serve")
    ap.add_argument("--seed", type=int, default=None, help="random seed (payloads, ids, ports)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every reply frame")
    ap.add_argument("-k", "--only", action="append", help="run only the cases with this name (repeatable)")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big")

    ctx = Ctx(args)
    print(f"packet tests: iface {ctx.iface} ({ctx.our_mac}, {ctx.our_ip}) -> target {ctx.target_ip}, "
          f"udp echo port {ctx.port}, seed {args.seed}", flush=True)
    try:
        ctx.read_counters()
        print(f"counters: {ctx.names} names", flush=True)
    except Exception as e:  # every case will fail on this too; say it once, clearly
        print(f"counters: {e}", flush=True)

    results = []
    t0 = time.monotonic()
    for fn in CASES:
        if args.only and fn.__name__ not in args.only and fn.__name__ != "arp_reply":
            continue
        c = Case(fn.__name__)
        start = time.monotonic()
        try:
            if fn is not arp_reply and ctx.target_mac is None:
                c.require(False, "target MAC unknown (the ARP case failed)")
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


if __name__ == "__main__":
    sys.exit(main())
