#!/usr/bin/python3
"""TCP packet tests: Scapy owns one end of each TCP connection and checks every segment back.

Usage (as root, inside the prober's network namespace; `tests/packet/run.sh kernel|ustack --tcp`
sets it all up):
  test_tcp_packets.py --iface ust0 --target-ip 198.18.0.2 --port 7777 --counters CMD --mtu 1500

The target at --target-ip runs a TCP echo server (epoll-server) on --port: ustack, or the Linux
kernel as the oracle. The prober's own kernel must stay out of these connections: it knows nothing
of them and would answer every segment of the target with a RST (run.sh drops those with one
nftables rule in the prober's namespace). Scapy's segments leave through a packet socket.

Each case opens its own connections (fresh port, random ISN) and drives them segment by segment;
one packet socket per connection sends and listens for the connection's whole life, so a segment
the target sends between two steps is queued, not missed. Every segment from the target passes
the common checks (Ethernet, IPv4 with DF and TTL 64, TCP checksum, ports, reserved bits, options
well-formed, timestamps on every segment once negotiated); each case then checks the fields it is
about. What RFC 9293/5961/7323 mandate is checked strictly; where Linux's answer hangs on a
sysctl or a timer a userspace stack may set differently, the check is loose and says so.
"""

import queue
import sys
import threading
import time

from packet_lib import (ETH_P_IP, REPLY_TIMEOUT, SILENCE_TIMEOUT, Case, IpView, Suite, be16, be32,
                        check_counters, check_eth, check_ip, l4_checksum_ok, main, raw_frame)
from scapy.all import IP, TCP, AsyncSniffer, Raw, conf

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
OPT_EOL, OPT_NOP, OPT_MSS, OPT_WS, OPT_SACK_OK, OPT_SACK, OPT_TS = 0, 1, 2, 3, 4, 5, 8
OPT_NAMES = {OPT_MSS: "mss", OPT_WS: "wscale", OPT_SACK_OK: "sackOK", OPT_SACK: "sack", OPT_TS: "TS"}
OPT_LEN = {OPT_MSS: 4, OPT_WS: 3, OPT_SACK_OK: 2, OPT_TS: 10}  # fixed total lengths (RFC 9293, 7323, 2018)
MOD = 1 << 32
DEFAULT_MSS = 536      # RFC 9293 §3.7.1: the send MSS when the peer sent no MSS option
OUR_WS = 7             # the window scale we offer where a case offers one (Linux's for 6 MB rmem)
IDLE = 0.3             # a burst of segments is over when nothing came for this long


def seq_add(a, n):
    return (a + n) % MOD


def seq_diff(a, b):
    """a - b as a signed 32-bit distance (RFC 9293 sequence arithmetic)."""
    d = (a - b) % MOD
    return d - MOD if d >= MOD // 2 else d


def flag_str(f):
    """Scapy's spelling: SA, RA, FA, PA, FPA."""
    return "".join(ch for bit, ch in ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "A"), (URG, "U"))
                   if f & bit) or "-"


def parse_options(b):
    """[(kind, data)] of a TCP options field; raises ValueError when it is malformed."""
    out, i = [], 0
    while i < len(b):
        kind = b[i]
        if kind == OPT_EOL:
            if any(b[i:]):
                raise ValueError(f"non-zero bytes after EOL: {b[i:].hex()}")
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= len(b) or b[i + 1] < 2 or i + b[i + 1] > len(b):
            raise ValueError(f"option {kind} at byte {i} overruns the options field ({b.hex()})")
        n = b[i + 1]
        if kind in OPT_LEN and n != OPT_LEN[kind]:
            raise ValueError(f"option {OPT_NAMES[kind]} has length {n}, want {OPT_LEN[kind]}")
        if kind == OPT_SACK and (n - 2) % 8:
            raise ValueError(f"SACK option length {n} is not 2 + 8k")
        out.append((kind, bytes(b[i + 2:i + n])))
        i += n
    return out


class Seg:
    """One TCP segment from the target, parsed from the raw frame (after the sanity filter)."""

    def __init__(self, raw, t):
        self.raw, self.t = raw, t
        self.ip = IpView.of(raw)
        tcp = self.ip.payload
        self.tcp = tcp
        self.sport, self.dport = be16(tcp, 0), be16(tcp, 2)
        self.seq, self.ack = be32(tcp, 4), be32(tcp, 8)
        self.doff = (tcp[12] >> 4) * 4
        self.reserved = ((tcp[12] & 0x0F) << 2) | (tcp[13] >> 6)  # reserved, AE, CWR, ECE: all 0 without ECN
        self.flags = tcp[13] & 0x3F
        self.window = be16(tcp, 14)
        self.urgent = be16(tcp, 18)
        self.payload = tcp[self.doff:] if 20 <= self.doff <= len(tcp) else b""
        try:
            self.options = parse_options(tcp[20:self.doff]) if 20 <= self.doff <= len(tcp) else []
            self.options_error = None
        except ValueError as e:
            self.options, self.options_error = [], str(e)

    def opt(self, kind):
        for k, v in self.options:
            if k == kind:
                return v
        return None

    @property
    def mss(self):
        v = self.opt(OPT_MSS)
        return None if v is None else be16(v, 0)

    @property
    def wscale(self):
        v = self.opt(OPT_WS)
        return None if v is None else v[0]

    @property
    def ts(self):
        v = self.opt(OPT_TS)
        return None if v is None else (be32(v, 0), be32(v, 4))

    @property
    def sack_ok(self):
        return self.opt(OPT_SACK_OK) is not None

    def has(self, f):
        return bool(self.flags & f)

    def end_seq(self):
        return seq_add(self.seq, len(self.payload) + self.has(SYN) + self.has(FIN))


def opts_str(seg):
    parts = []
    for k, v in seg.options:
        if k == OPT_MSS:
            parts.append(f"mss {be16(v, 0)}")
        elif k == OPT_WS:
            parts.append(f"wscale {v[0]}")
        elif k == OPT_TS:
            parts.append(f"TS val {be32(v, 0)} ecr {be32(v, 4)}")
        elif k == OPT_SACK:
            parts.append("sack " + " ".join(f"{be32(v, i)}-{be32(v, i + 4)}" for i in range(0, len(v), 8)))
        else:
            parts.append(OPT_NAMES.get(k, f"opt{k}"))
    return ",".join(parts)


class TcpConn:
    """Our end of one TCP connection to the target (or of an attempt, to a closed port).

    RFC 9293 names: iss/snd_nxt are ours, irs/rcv_nxt the target's. send() never moves snd_nxt;
    push() sends at snd_nxt and moves it. Every segment received is checked (check()) before a
    case sees it. Used as a context manager: on exit a connection still open is reset (RST at
    snd_nxt), so the target's echo server closes it too, and the socket is closed."""

    def __init__(self, c, ctx, dport=None, window=65535):
        self.c, self.ctx = c, ctx
        self.sport = new_tcp_port(ctx)
        self.dport = ctx.port if dport is None else dport
        self.iss = ctx.rng.getrandbits(32)
        self.snd_nxt = self.iss
        self.irs = self.rcv_nxt = None
        self.window = window        # the window field we send (already scaled when scaling is on)
        self.offered = []           # the options of our SYN, Scapy style
        self.ts_ok = False          # both sides sent TS in the handshake (RFC 7323 §3.2)
        self.ts_recent = 0          # the target's latest TSval: our TSecr
        self.ts_sent = set()        # every TSval we sent: the target's TSecr must be one of them
        self.ts_base = ctx.rng.getrandbits(32)
        self.their_ws = None        # the target's window scale, when both offered one
        self.open_ = False
        self.q = queue.Queue()
        self.reported = set()
        self.sock = conf.L2socket(iface=ctx.iface, promisc=False)
        started = threading.Event()
        self.sniffer = AsyncSniffer(opened_socket=self.sock, prn=self._on_frame, store=False,
                                    started_callback=started.set)
        self.sniffer.start()
        if not started.wait(5):
            self.sock.close()
            raise RuntimeError("the sniffer did not start")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            if self.open_:
                self.send(RST, options=[])
        finally:
            self.sniffer.stop()
            self.sock.close()
        return False

    # --- receiving -------------------------------------------------------------------------
    def _on_frame(self, pkt):
        """On the sniffer's thread: queues the segments of this connection (its port pair)."""
        t = time.monotonic()
        raw = raw_frame(pkt)
        if len(raw) < 14 + 20 + 20 or be16(raw, 12) != ETH_P_IP:
            return
        v = IpView.of(raw)
        if v is None or v.src != self.ctx.target_ip or v.proto != 6 or len(v.payload) < 20:
            return
        if be16(v.payload, 0) != self.dport or be16(v.payload, 2) != self.sport:
            return
        self.q.put(Seg(raw, t))

    def recv(self, timeout):
        """The next segment from the target, checked, or None after `timeout` seconds."""
        try:
            seg = self.q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if self.ctx.verbose:
            print(f"     < {self.fmt(seg)}", flush=True)
        self.check(seg)
        if seg.ts is not None:
            self.ts_recent = seg.ts[0]
        return seg

    def expect(self, what, timeout=REPLY_TIMEOUT):
        seg = self.recv(timeout)
        self.c.require(seg is not None, f"no {what} within {timeout}s")
        return seg

    def collect(self, first_timeout=REPLY_TIMEOUT, idle=IDLE, until=None, limit=None):
        """Segments until until(segs) is true, or nothing came for `idle` seconds after the first
        one, or none came within `first_timeout`; `limit` caps the whole wait."""
        segs = []
        start = time.monotonic()
        while True:
            now = time.monotonic()
            wait = first_timeout - (now - start) if not segs else idle
            if limit is not None:
                wait = min(wait, limit - (now - start))
            seg = self.recv(wait)
            if seg is None:
                return segs
            segs.append(seg)
            if until is not None and until(segs):
                return segs

    def expect_nothing(self, what, timeout=SILENCE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            seg = self.recv(left)
            if seg is not None:
                self.c.errors.append(f"{what}: unexpected segment {self.fmt(seg)}")

    def read_stream(self, n, what, timeout=REPLY_TIMEOUT, segs=None):
        """The target's next n bytes from rcv_nxt, placed by sequence number (overlaps and
        retransmissions are fine), with every segment that came meanwhile; moves rcv_nxt.
        Data beyond the n bytes, a FIN or a RST in the middle is an error."""
        start = self.rcv_nxt
        buf, have = bytearray(n), [False] * n
        segs = [] if segs is None else segs

        def place(seg):
            off = seq_diff(seg.seq, start)
            for i, b in enumerate(seg.payload):
                if 0 <= off + i < n:
                    buf[off + i], have[off + i] = b, True
            if seg.payload and off + len(seg.payload) > n:
                self.c.errors.append(f"{what}: data beyond the {n} bytes expected: {self.fmt(seg)}")
            if seg.has(RST) or seg.has(SYN):
                self.c.errors.append(f"{what}: unexpected {self.fmt(seg)}")

        for seg in segs:
            place(seg)
        deadline = time.monotonic() + timeout
        while not all(have):
            seg = self.recv(deadline - time.monotonic())
            self.c.require(seg is not None, f"{what}: {sum(have)} of {n} bytes within {timeout}s")
            segs.append(seg)
            place(seg)
        self.rcv_nxt = seq_add(start, n)
        return bytes(buf), segs

    # --- sending ---------------------------------------------------------------------------
    def tsval(self):
        v = (self.ts_base + int(time.monotonic() * 1000)) % MOD
        self.ts_sent.add(v)
        return v

    def send(self, flags, data=b"", seq=None, ack=None, window=None, options=None):
        """One segment; by default at snd_nxt, acking rcv_nxt when ACK is set, with our
        timestamp once TS is negotiated (RFC 7323 §3.2: on every segment but a RST)."""
        seq = self.snd_nxt if seq is None else seq
        if ack is None:
            ack = self.rcv_nxt if flags & ACK and self.rcv_nxt is not None else 0
        if options is None:
            options = [("NOP", None), ("NOP", None), ("Timestamp", (self.tsval(), self.ts_recent))] \
                if self.ts_ok and not flags & RST else []
        pkt = (self.ctx.eth() / IP(src=self.ctx.our_ip, dst=self.ctx.target_ip, flags="DF", ttl=64,
                                   id=self.ctx.rng.randrange(1, 0xFFFF))
               / TCP(sport=self.sport, dport=self.dport, seq=seq, ack=ack, flags=flags,
                     window=self.window if window is None else window, options=options))
        if data:
            pkt = pkt / Raw(data)
        if self.ctx.verbose:
            rel = f"iss+{seq_diff(seq, self.iss)}"
            rack = f" ack=irs+{seq_diff(ack, self.irs)}" if flags & ACK and self.irs is not None else f" ack={ack}"
            print(f"     > {flag_str(flags)} seq={rel}{rack} win={pkt[TCP].window} len={len(data)} {options}",
                  flush=True)
        self.sock.send(pkt)

    def push(self, data, flags=PSH | ACK, **kw):
        """Data (and FIN when in flags) at snd_nxt; moves snd_nxt past it."""
        self.send(flags, data, **kw)
        self.snd_nxt = seq_add(self.snd_nxt, len(data) + bool(flags & FIN))

    def ack(self, **kw):
        self.send(ACK, **kw)

    # --- the handshake ---------------------------------------------------------------------
    def syn(self, options, what="SYN/ACK"):
        """Sends our SYN with `options` (Scapy style); returns the SYN/ACK, its handshake fields
        checked (flags, ack, no payload, window, options answering only what we offered)."""
        self.offered = options
        ts_offered = None
        if any(name == "Timestamp" for name, _ in options):
            tsv = self.tsval()
            options = [(n, (tsv, 0) if n == "Timestamp" else v) for n, v in options]
            ts_offered = tsv
        self.send(SYN, options=options)
        self.snd_nxt = seq_add(self.iss, 1)
        sa = self.expect(what)
        check_synack(self.c, self.ctx, self, sa, ts_offered)
        self.irs = sa.seq
        self.rcv_nxt = seq_add(sa.seq, 1)
        self.open_ = True  # from here on, the context manager's exit resets it
        self.ts_ok = ts_offered is not None and sa.ts is not None
        offered_ws = any(name == "WScale" for name, _ in options)
        self.their_ws = sa.wscale if offered_ws and sa.wscale is not None else None
        return sa

    def connect(self, options=None, ack_window=None):
        """SYN, SYN/ACK, ACK: an established connection. Returns the SYN/ACK. `ack_window` is the
        window field of the ACK (scaled, when both offered window scaling)."""
        sa = self.syn(mss_options() if options is None else options)
        self.ack(window=ack_window)
        return sa

    # --- checks ----------------------------------------------------------------------------
    def check(self, seg):
        """The checks every segment from the target must pass; each distinct failure once."""
        tmp = Case("segment")
        check_tcp_segment(tmp, self.ctx, self, seg)
        for e in tmp.errors:
            msg = f"{flag_str(seg.flags)} segment: {e}"
            if msg not in self.reported:
                self.reported.add(msg)
                self.c.errors.append(msg)

    def fmt(self, seg):
        if self.irs is not None:
            seq = f"irs+{seq_diff(seg.seq, self.irs)}"
        else:
            seq = str(seg.seq)
        ack = f"iss+{seq_diff(seg.ack, self.iss)}" if seg.has(ACK) else str(seg.ack)
        return (f"{flag_str(seg.flags)} seq={seq} ack={ack} win={seg.window} len={len(seg.payload)}"
                f" [{opts_str(seg)}] ttl {seg.ip.ttl}{' DF' if seg.ip.df else ''}")


def mss_options():
    return [("MSS", 1460)]


def linux_syn_options(mss=True, sack=False, ts=False, ws=None):
    """SYN options laid out the way Linux lays them out (tcp_options_write): MSS, then SACK-permitted
    and timestamps (SACKOK+TS packed, or NOP NOP before either alone), then NOP + window scale.
    The timestamp's TSval is filled in by TcpConn.syn."""
    opts = [("MSS", 1460)] if mss else []
    if sack and ts:
        opts += [("SAckOK", b""), ("Timestamp", (0, 0))]
    elif ts:
        opts += [("NOP", None), ("NOP", None), ("Timestamp", (0, 0))]
    elif sack:
        opts += [("NOP", None), ("NOP", None), ("SAckOK", b"")]
    if ws is not None:
        opts += [("NOP", None), ("WScale", ws)]
    return opts


def check_tcp_segment(c, ctx, conn, seg):
    check_eth(c, ctx, seg.raw, ETH_P_IP)
    check_ip(c, ctx, seg.ip, 6)
    # Linux sets DF on every TCP segment (path MTU discovery, RFC 1191) and TTL 64 (its
    # ip_default_ttl); ustack is to do the same.
    c.expect(seg.ip.df, "IP DF is not set")
    c.eq("IP TTL", seg.ip.ttl, 64)
    c.expect(l4_checksum_ok(seg.ip.src, seg.ip.dst, 6, seg.tcp), f"TCP checksum 0x{be16(seg.tcp, 16):04x} is wrong")
    c.expect(20 <= seg.doff <= len(seg.tcp), f"TCP data offset {seg.doff} (segment {len(seg.tcp)} bytes)")
    c.eq("TCP reserved/AE/CWR/ECE bits (no ECN was negotiated)", seg.reserved, 0)
    c.expect(not seg.has(URG), "URG is set")
    c.eq("urgent pointer", seg.urgent, 0)
    c.expect(seg.options_error is None, f"TCP options malformed: {seg.options_error}")
    if not seg.has(SYN):
        for k in (OPT_MSS, OPT_WS, OPT_SACK_OK):  # RFC 9293 §3.7.1, RFC 7323 §2.2, RFC 2018 §2: SYN only
            c.expect(seg.opt(k) is None, f"{OPT_NAMES[k]} option on a segment without SYN")
    if conn.ts_ok and not seg.has(RST):
        # RFC 7323 §3.2: once negotiated, TSopt MUST be sent in every non-RST segment; its TSecr
        # echoes a TSval we sent (TS.Recent).
        if c.expect(seg.ts is not None, "no timestamp option though timestamps were negotiated"):
            c.expect(seg.ts[1] in conn.ts_sent, f"TSecr {seg.ts[1]} is none of the TSvals we sent")
    elif seg.opt(OPT_TS) is not None and not seg.has(SYN):
        c.errors.append("timestamp option on a connection that did not negotiate timestamps")
    if seg.opt(OPT_SACK) is not None and not conn_sack_ok(conn):
        c.errors.append("SACK blocks on a connection that did not negotiate SACK (RFC 2018 §2)")


def conn_sack_ok(conn):
    return any(name == "SAckOK" for name, _ in conn.offered)


def check_synack(c, ctx, conn, sa, ts_offered):
    """The SYN/ACK answering our SYN: what RFC 9293, 7323 and 2018 demand of it, and Linux's MSS."""
    names = [name for name, _ in conn.offered]
    c.eq("SYN/ACK flags", flag_str(sa.flags), "SA")
    c.eq("SYN/ACK ack (our ISN + 1)", sa.ack, seq_add(conn.iss, 1))
    c.eq("SYN/ACK payload length", len(sa.payload), 0)
    c.expect(sa.window != 0, "SYN/ACK window is 0")
    # RFC 9293 §3.7.1 (MUST-14/15): the MSS option says what we may send: the target's MTU - 40,
    # whatever we offered (Linux: dst_metric_advmss). Linux always sends one, also to a SYN without.
    c.eq("SYN/ACK MSS option", sa.mss, ctx.args.mtu - 40)
    if "WScale" in names:
        # RFC 7323 §2.3: at most 14. Linux: 7..10 depending on tcp_rmem; loosely "present".
        if c.expect(sa.wscale is not None, "no window scale option though we offered one"):
            c.expect(sa.wscale <= 14, f"window scale {sa.wscale} > 14")
    else:
        c.expect(sa.wscale is None, "window scale option though we offered none (RFC 7323 §2.2)")
    if "SAckOK" in names:
        c.expect(sa.sack_ok, "no SACK-permitted option though we offered it")
    else:
        c.expect(not sa.sack_ok, "SACK-permitted option though we did not offer it (RFC 2018 §2)")
    if ts_offered is not None:
        if c.expect(sa.ts is not None, "no timestamp option though we offered timestamps"):
            c.eq("SYN/ACK TSecr (our TSval)", sa.ts[1], ts_offered)
    else:
        c.expect(sa.ts is None, "timestamp option though we offered none (RFC 7323 §3.2)")
    known = {OPT_MSS, OPT_WS, OPT_SACK_OK, OPT_TS}
    others = [k for k, _ in sa.options if k not in known]
    c.expect(not others, f"options we did not ask for: {others}")


def expect_ack_only(c, conn, seg, what, ack):
    """A pure ACK (no data, no other flag) at the target's snd_nxt acking `ack`."""
    c.eq(f"{what}: flags", flag_str(seg.flags), "A")
    c.eq(f"{what}: seq (the target's snd_nxt)", seq_diff(seg.seq, conn.irs), seq_diff(conn.rcv_nxt, conn.irs))
    c.eq(f"{what}: ack", seq_diff(seg.ack, conn.iss), seq_diff(ack, conn.iss))
    c.eq(f"{what}: payload length", len(seg.payload), 0)


def echo(c, conn, data, what="echo"):
    """Sends `data` at snd_nxt and reads it back; every segment meanwhile must ack all of it and
    carry nothing but data (no FIN: the echo server closes only on EOF). Then ACKs the echo."""
    start = conn.rcv_nxt
    conn.push(data)
    got, segs = conn.read_stream(len(data), what)
    c.expect(got == data, f"{what}: got {got[:40]!r}..., sent {data[:40]!r}... ({len(data)} bytes)")
    for seg in segs:
        c.eq(f"{what}: {conn.fmt(seg)}: ack (all we sent)", seq_diff(seg.ack, conn.iss), seq_diff(conn.snd_nxt, conn.iss))
        c.expect(seg.has(ACK) and not seg.flags & (SYN | FIN | RST), f"{what}: flags of {conn.fmt(seg)}")
        if seg.payload:
            c.expect(seq_diff(seg.seq, start) >= 0, f"{what}: data before the stream position: {conn.fmt(seg)}")
    conn.ack()
    return segs


def expect_reset(c, conn, what, seq):
    """A RST without ACK, seq = the ack field of the segment that provoked it (RFC 9293 §3.10.7.1:
    <SEQ=SEG.ACK><CTL=RST>)."""
    rst = conn.expect(what)
    c.eq(f"{what}: flags", flag_str(rst.flags), "R")
    c.eq(f"{what}: seq", rst.seq, seq)
    c.eq(f"{what}: payload length", len(rst.payload), 0)
    return rst


# ---------------------------------------------------------------------------------------------
# The cases, in order.

COUNTERS = {
    "rst_closed_port_syn": {"ustack": {"tcp.tx_resets": 1}, "kernel": {"Tcp.OutRsts": 1}},
    "rst_closed_port_ack": {"ustack": {"tcp.tx_resets": 1}, "kernel": {"Tcp.OutRsts": 1}},
    "rst_closed_port_rst": {"ustack": {"tcp.tx_resets": 0}, "kernel": {"Tcp.OutRsts": 0}},
    "challenge_ack_rst": {"ustack": {"tcp.challenge_acks": 1}, "kernel": {"TcpExt.TCPChallengeACK": 1}},
    "challenge_ack_syn": {"ustack": {"tcp.challenge_acks": 1},
                          "kernel": {"TcpExt.TCPChallengeACK": 1, "TcpExt.TCPSYNChallenge": 1}},
}


def add_args(ap):
    ap.add_argument("--mtu", type=int, default=1500, help="the target's IP MTU: its SYN/ACK must offer MSS = MTU - 40")


SUITE = Suite(__doc__, COUNTERS, add_args=add_args, banner="tcp echo ")
case = SUITE.case


def handshake_case(c, ctx, options):
    with TcpConn(c, ctx) as conn:
        sa = conn.syn(options)
        c.notes.append(f"SYN/ACK [{opts_str(sa)}] win {sa.window}")
        # RST at our ISN + 1 ends the embryonic connection (RFC 9293 §3.10.7.3: an acceptable RST
        # in SYN-RECEIVED); the context manager sends it.


@case
def handshake_mss(c, ctx):
    handshake_case(c, ctx, linux_syn_options())


@case
def handshake_mss_wscale(c, ctx):
    handshake_case(c, ctx, linux_syn_options(ws=OUR_WS))


@case
def handshake_mss_sackok(c, ctx):
    handshake_case(c, ctx, linux_syn_options(sack=True))


@case
def handshake_mss_timestamps(c, ctx):
    handshake_case(c, ctx, linux_syn_options(ts=True))


@case
def handshake_all_options(c, ctx):
    handshake_case(c, ctx, linux_syn_options(sack=True, ts=True, ws=OUR_WS))


@case
def syn_without_options(c, ctx):
    """No MSS option from us: the target may send us segments of 536 bytes at most (RFC 9293
    §3.7.1, MUST-15), though it still states its own MSS."""
    with TcpConn(c, ctx) as conn:
        conn.connect(options=[])
        data = bytes(ctx.rng.getrandbits(8) for _ in range(1200))
        segs = echo(c, conn, data, "1200-byte echo")
        sizes = [len(s.payload) for s in segs if s.payload]
        c.expect(max(sizes) <= DEFAULT_MSS, f"data segments of {sizes} bytes: more than {DEFAULT_MSS}")
        c.notes.append(f"echo in segments of {sizes} bytes")


@case
def rst_closed_port_syn(c, ctx):
    before = ctx.read_counters()
    with TcpConn(c, ctx, dport=ctx.closed_port) as conn:
        conn.send(SYN, options=mss_options())
        rst = conn.expect(f"RST for a SYN to closed port {ctx.closed_port}")
        # RFC 9293 §3.10.7.1: no ACK on the SYN, so <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
        c.eq("flags", flag_str(rst.flags), "RA")
        c.eq("seq", rst.seq, 0)
        c.eq("ack (our ISN + 1)", rst.ack, seq_add(conn.iss, 1))
        c.eq("payload length", len(rst.payload), 0)
        c.eq("window (Linux: 0)", rst.window, 0)
        conn.expect_nothing("after the RST", 0.3)
    check_counters(c, ctx, "rst_closed_port_syn", before)


@case
def rst_closed_port_ack(c, ctx):
    before = ctx.read_counters()
    with TcpConn(c, ctx, dport=ctx.closed_port) as conn:
        their = ctx.rng.getrandbits(32)
        conn.send(ACK, ack=their)
        rst = expect_reset(c, conn, f"RST for an ACK to closed port {ctx.closed_port}", their)
        # The ack field means nothing without the ACK flag (Linux sends 0): not checked.
        c.eq("window (Linux: 0)", rst.window, 0)
        conn.expect_nothing("after the RST", 0.3)
    check_counters(c, ctx, "rst_closed_port_ack", before)


@case
def rst_closed_port_rst(c, ctx):
    before = ctx.read_counters()
    with TcpConn(c, ctx, dport=ctx.closed_port) as conn:
        # RFC 9293 §3.10.7.1: "An incoming segment containing a RST is discarded."
        conn.send(RST)
        conn.send(RST | ACK, ack=ctx.rng.getrandbits(32))
        conn.expect_nothing(f"RST and RST|ACK to closed port {ctx.closed_port}")
    check_counters(c, ctx, "rst_closed_port_rst", before)


@case
def data_echo(c, ctx):
    """All of Linux's SYN options, so timestamps are checked on every data segment too."""
    with TcpConn(c, ctx) as conn:
        conn.connect(options=linux_syn_options(sack=True, ts=True, ws=OUR_WS), ack_window=65535 >> OUR_WS)
        c.require(conn.ts_ok, "timestamps were not negotiated")
        conn.window = 65535 >> OUR_WS
        segs = echo(c, conn, b"hello")
        data_segs = [s for s in segs if s.payload]
        c.eq("first echo segment seq", seq_diff(data_segs[0].seq, conn.irs), 1)
        # The echo server keeps the connection open: nothing more (no FIN, no retransmission).
        conn.expect_nothing("after the echo was acked", 0.5)
        c.notes.append(f"{len(segs)} segment(s): " + "; ".join(flag_str(s.flags) + f" len {len(s.payload)}" for s in segs))


@case
def out_of_order(c, ctx):
    """Bytes 6-10 before 1-5, no SACK negotiated: an immediate duplicate ACK for the hole (RFC 5681
    §4.2 SHOULD; Linux does; checked within the reply timeout), then one ACK of all 10 bytes and
    the echo of all 10 in order."""
    with TcpConn(c, ctx) as conn:
        conn.connect()
        data = b"ABCDEFGHIJ"
        first = conn.snd_nxt
        conn.send(PSH | ACK, data[5:], seq=seq_add(first, 5))
        dup = conn.expect("duplicate ACK for the out-of-order segment")
        expect_ack_only(c, conn, dup, "duplicate ACK", first)
        conn.send(PSH | ACK, data[:5], seq=first)  # fills the hole: the target holds all 10
        conn.snd_nxt = seq_add(first, 10)
        start = conn.rcv_nxt
        got, segs = conn.read_stream(10, "echo after the hole was filled")
        c.eq("echo", got, data)
        for seg in segs:
            c.eq(f"{conn.fmt(seg)}: ack (all 10 bytes)", seq_diff(seg.ack, conn.iss), seq_diff(first, conn.iss) + 10)
        c.eq("first echo segment seq", seq_diff([s for s in segs if s.payload][0].seq, start), 0)
        conn.ack()


@case
def synack_retransmitted(c, ctx):
    """No ACK for the SYN/ACK: it comes again, the same, after the initial RTO (RFC 6298 (2.1):
    1 s; Linux: 1 s, then 2 s, ...). The timing is checked loosely: 0.8 to 3 s."""
    with TcpConn(c, ctx) as conn:
        sa = conn.syn(mss_options())
        again = conn.expect("retransmitted SYN/ACK", 3.5)
        gap = again.t - sa.t
        c.eq("retransmission flags", flag_str(again.flags), "SA")
        c.eq("retransmission seq (the same ISN)", again.seq, sa.seq)
        c.eq("retransmission ack", again.ack, sa.ack)
        c.eq("retransmission MSS option", again.mss, sa.mss)
        c.eq("retransmission payload length", len(again.payload), 0)
        c.expect(0.8 <= gap <= 3.0, f"retransmitted after {gap:.2f}s, want 0.8-3 s")
        c.notes.append(f"again after {gap:.2f}s")


def expect_fin_after_ours(c, conn, data, what):
    """We sent `data` and FIN; the target (its echo server sees EOF after the data) echoes the
    data and closes: segments up to its FIN, all acking our FIN, the FIN right after the echo.
    We ACK the FIN; the target then holds no connection (LAST-ACK -> CLOSED, no TIME-WAIT on the
    passive side), so a further ACK gets a RST (RFC 9293 §3.10.7.2, LISTEN: <SEQ=SEG.ACK><CTL=RST>)."""
    start = conn.rcv_nxt
    segs = conn.collect(until=lambda s: s[-1].has(FIN))
    c.require(segs and segs[-1].has(FIN), f"{what}: no FIN from the target within {REPLY_TIMEOUT}s "
              f"(got {[conn.fmt(s) for s in segs]})")
    fin = segs[-1]
    for seg in segs:
        c.eq(f"{what}: {conn.fmt(seg)}: ack (our data + FIN)", seq_diff(seg.ack, conn.iss), seq_diff(conn.snd_nxt, conn.iss))
        c.expect(seg.has(ACK) and not seg.flags & (SYN | RST), f"{what}: flags of {conn.fmt(seg)}")
    stream = bytearray(len(data))
    for seg in segs:
        off = seq_diff(seg.seq, start)
        stream[off:off + len(seg.payload)] = seg.payload
    c.eq(f"{what}: echoed before the FIN", bytes(stream), data)
    c.eq(f"{what}: FIN seq (right after the echo)", seq_diff(fin.end_seq(), start), len(data) + 1)
    conn.rcv_nxt = fin.end_seq()
    conn.ack()
    conn.open_ = False
    conn.expect_nothing(f"{what}: after we acked the FIN", 0.3)
    conn.ack()
    expect_reset(c, conn, f"{what}: RST for an ACK after the close", conn.rcv_nxt)
    c.notes.append(" ".join(f"{flag_str(s.flags)}/{len(s.payload)}" for s in segs))


@case
def fin_we_close_first(c, ctx):
    with TcpConn(c, ctx) as conn:
        conn.connect()
        conn.expect_nothing("before any FIN (the echo server closes only on EOF)", 0.3)
        conn.push(b"", FIN | ACK)
        expect_fin_after_ours(c, conn, b"", "FIN")


@case
def fin_with_data(c, ctx):
    with TcpConn(c, ctx) as conn:
        conn.connect()
        conn.push(b"bye!", FIN | PSH | ACK)
        expect_fin_after_ours(c, conn, b"bye!", "data+FIN")


@case
def challenge_ack_rst(c, ctx):
    """RFC 5961 §3.2: a RST in the window but not at rcv_nxt gets a challenge ACK and leaves the
    connection up. (Linux allows one challenge ACK per connection per tcp_invalid_ratelimit, 500
    ms: each challenge case has a connection of its own.)"""
    before = ctx.read_counters()
    with TcpConn(c, ctx) as conn:
        conn.connect()
        conn.send(RST, seq=seq_add(conn.snd_nxt, 100))
        ack = conn.expect("challenge ACK for an in-window RST")
        expect_ack_only(c, conn, ack, "challenge ACK", conn.snd_nxt)
        echo(c, conn, b"still connected")
    check_counters(c, ctx, "challenge_ack_rst", before)


@case
def challenge_ack_syn(c, ctx):
    """RFC 5961 §4.2 (RFC 9293 §3.10.7.4): a SYN on an established connection, whatever its
    sequence number, gets a challenge ACK and leaves the connection up."""
    before = ctx.read_counters()
    with TcpConn(c, ctx) as conn:
        conn.connect()
        conn.send(SYN, seq=seq_add(conn.snd_nxt, 1000), options=mss_options())
        ack = conn.expect("challenge ACK for a SYN")
        expect_ack_only(c, conn, ack, "challenge ACK", conn.snd_nxt)
        echo(c, conn, b"still connected")
    check_counters(c, ctx, "challenge_ack_syn", before)


@case
def rst_exact_seq(c, ctx):
    """RFC 5961 §3.2: a RST at exactly rcv_nxt resets the connection, silently; then a data
    segment finds no connection and gets a RST."""
    with TcpConn(c, ctx) as conn:
        conn.connect()
        echo(c, conn, b"before the reset")
        conn.send(RST)
        conn.open_ = False
        conn.expect_nothing("after a RST at rcv_nxt", 0.5)
        conn.send(PSH | ACK, b"after the reset")
        expect_reset(c, conn, "RST for data after the reset", conn.rcv_nxt)


@case
def out_of_window_data(c, ctx):
    """Data far beyond the window: an ACK of rcv_nxt (RFC 9293 §3.10.7.4: an unacceptable
    segment gets <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>) and the data is not delivered: the next
    in-order echo carries only the next in-order bytes."""
    with TcpConn(c, ctx) as conn:
        conn.connect()
        conn.send(PSH | ACK, b"far away" * 8, seq=seq_add(conn.snd_nxt, 0x10000000))
        ack = conn.expect("ACK for out-of-window data")
        expect_ack_only(c, conn, ack, "ACK for out-of-window data", conn.snd_nxt)
        echo(c, conn, b"in order")


@case
def old_duplicate_data(c, ctx):
    """A segment entirely below rcv_nxt (a retransmission of data already acked): an immediate
    ACK of rcv_nxt (RFC 9293 §3.10.7.4) and no second delivery (the echo does not come again)."""
    with TcpConn(c, ctx) as conn:
        conn.connect()
        data = b"only once"
        echo(c, conn, data)
        conn.send(PSH | ACK, data, seq=seq_add(conn.snd_nxt, -len(data)))
        ack = conn.expect("ACK for a duplicate segment")
        expect_ack_only(c, conn, ack, "ACK for a duplicate segment", conn.snd_nxt)
        conn.expect_nothing("after the duplicate (no second echo)", 0.5)


@case
def window_scale(c, ctx):
    """Both sides scale (RFC 7323 §2): we announce 512 bytes as window field 4 << 7 and ask for a
    1000-byte echo. The target may send at most 512 bytes (strict), and more than 4 (it applied
    our scale); when it sends them is loose (Linux sends 512 at once, then retransmits them on
    its RTO while we do not ACK; RFC 9293's sender SWS avoidance may wait up to 1 s). Its own
    window field, scaled by its shift, must be plausible: at least one of our MSS."""
    with TcpConn(c, ctx) as conn:
        sa = conn.connect(options=linux_syn_options(ws=OUR_WS), ack_window=4)
        c.require(conn.their_ws is not None, "no window scale in the SYN/ACK")
        conn.window = 4
        data = bytes(ctx.rng.getrandbits(8) for _ in range(1000))
        start = conn.rcv_nxt
        conn.push(data)

        def reach(segs):  # how far into the echo the target went (retransmissions count once)
            return max([seq_diff(x.seq, start) + len(x.payload) for x in segs if x.payload] + [0])

        segs = conn.collect(first_timeout=2.0, until=lambda s: reach(s) >= 512)
        segs += conn.collect(first_timeout=IDLE)  # anything beyond 512 comes now, or never
        sent = reach(segs)
        c.expect(sent <= 512, f"{sent} bytes sent into our 512-byte window")
        c.expect(sent > 4, f"only {sent} bytes within 2 s: our window scale (7) was not applied?")
        for seg in segs:
            wnd = seg.window << conn.their_ws
            c.expect(1460 <= wnd <= 1 << 30, f"{conn.fmt(seg)}: window {seg.window} << {conn.their_ws} = {wnd}")
        conn.window = 65535 >> OUR_WS  # open it: ACK what came, window 64 KB
        conn.ack(ack=seq_add(conn.rcv_nxt, sent))
        got, _ = conn.read_stream(len(data), "echo after the window opened", segs=segs)
        c.expect(got == data, "the echo differs from the data sent")
        conn.ack()
        c.notes.append(f"SYN/ACK wscale {sa.wscale}; {sent} bytes into the 512-byte window")


@case
def zero_window(c, ctx):
    """After the handshake we advertise a zero window on the segment that asks for an echo. The
    target must not send data into it (at most a 1-byte probe) and must probe (RFC 9293
    §3.8.6.1, RFC 1122 4.2.2.17): a window probe within 3 s (loose; Linux: 0 bytes at
    snd_una - 1 after ~200 ms, then backing off). Once we open the window, the echo comes."""
    with TcpConn(c, ctx) as conn:
        conn.connect()
        conn.window = 0
        data = b"wait for the window"
        conn.push(data)
        una = conn.rcv_nxt
        probe = None
        segs = conn.collect(first_timeout=3.0, idle=3.0, limit=3.0,
                            until=lambda s: is_probe(s[-1], una))
        for seg in segs:
            c.expect(len(seg.payload) <= 1, f"{len(seg.payload)} bytes sent into a zero window: {conn.fmt(seg)}")
            c.eq(f"{conn.fmt(seg)}: ack", seq_diff(seg.ack, conn.iss), seq_diff(conn.snd_nxt, conn.iss))
            if is_probe(seg, una):
                probe = seg
        c.require(probe is not None, f"no window probe within 3 s (got {[conn.fmt(s) for s in segs]})")
        c.notes.append(f"probe {conn.fmt(probe)} {probe.t - segs[0].t:.2f}s after the first segment")
        conn.window = 65535
        conn.ack()
        got, _ = conn.read_stream(len(data), "echo after the window opened")
        c.eq("echo", got, data)
        conn.ack()


def is_probe(seg, una):
    """A zero-window probe: 0 bytes at snd_una - 1 (Linux: an old sequence number forces an ACK),
    or 1 byte at snd_una (RFC 9293 §3.8.6.1)."""
    return (not seg.payload and seq_diff(seg.seq, una) == -1) or (len(seg.payload) == 1 and seg.seq == una)


def new_tcp_port(ctx):
    """A source port no earlier connection of this run used (no old state on the target)."""
    used = ctx.__dict__.setdefault("tcp_ports_used", set())
    while True:
        p = ctx.rng.randrange(20000, 60000)
        if p not in used:
            used.add(p)
            return p


if __name__ == "__main__":
    sys.exit(main(SUITE))
