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

Helpers shared with the TCP suite (test_tcp_packets.py) are in packet_lib.py.
"""

import sys

from packet_lib import (ETH_P_ARP, ETH_P_IP, REPLY_TIMEOUT, SILENCE_TIMEOUT, IpView, Suite, be16,
                        bytes_to_ip, check_counters, check_eth, check_ip, corrupt16, expect_silence,
                        l4_checksum_ok, mac_str, main)
from scapy.all import ARP, ICMP, IP, UDP, Ether, Raw, checksum, fragment

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



# ---------------------------------------------------------------------------------------------
# The cases, in order.

SUITE = Suite(__doc__, COUNTERS, banner="udp echo ")
case = SUITE.case


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


SUITE.gate = arp_reply  # learns the target's MAC, which every other case needs: runs first, always


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


if __name__ == "__main__":
    sys.exit(main(SUITE))
