"""The scripted peer's end of the wire: a tun device in the namespace of the kernel under test.

Like packetdrill's, the device is ``tun0`` (scripts' shell lines name it: ``tc qdisc add dev tun0
...``), with a virtio-net header and the offloads of a typical Ethernet device (checksum, TSO), so
the kernel hands it whole TSO segments (``> P. 1:10001(10000)``) and accepts large segments that
the script injects with ``--mss``.  Every frame the kernel sends is read at once by a thread of its
own, through a packet socket on the device that the kernel stamps as each frame leaves (as
packetdrill reads them: a busy machine delays the reader, not the stamp); the tun device itself
is drained beside it.  The runner takes the frames in order.

The segments themselves are built and read here with ``struct`` (no Scapy: a script's run starts in
milliseconds), IPv4 and IPv6, with their checksums.
"""
from __future__ import annotations

import fcntl
import ipaddress
import os
import queue
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass

from ..errors import TcplabError
from ..notation import FLAG_BITS, flags_from_bits
from .netns import Namespace, ipr as _ipr

TUNSETIFF, TUNSETOFFLOAD = 0x400454CA, 0x400454D0
IFF_TUN, IFF_NO_PI, IFF_VNET_HDR = 0x0001, 0x1000, 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN = 0x01, 0x02, 0x04, 0x08
VNET_HDR = struct.Struct("=BBHHHH")          # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
GSO_TCPV4, GSO_TCPV6 = 1, 4
NAME = "tun0"
ETH_P_ALL, SO_TIMESTAMPNS, PACKET_OUTGOING = 0x0003, 35, 4
OPT_KIND = {"eol": 0, "nop": 1, "mss": 2, "wscale": 3, "sackOK": 4, "sack": 5, "TS": 8}


@dataclass
class Frame:
    """One TCP segment read from or written to the tun device (addresses and numbers as on the wire)."""
    time: float
    family: int
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: frozenset
    win: int
    urg: int
    options: list                       # (kind name, value): mss int, wscale int, TS (val, ecr), sack ((l, r), ...), FO bytes
    payload: bytes
    ttl: int = 64
    tos: int = 0

    @property
    def length(self) -> int:
        return len(self.payload)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def encode_options(options: list) -> bytes:
    out = b""
    for kind, value in options:
        if kind in ("nop", "eol"):
            out += bytes([OPT_KIND[kind]])
        elif kind == "mss":
            out += struct.pack("!BBH", 2, 4, value)
        elif kind == "wscale":
            out += struct.pack("!BBB", 3, 3, value)
        elif kind == "sackOK":
            out += b"\x04\x02"
        elif kind == "TS":
            out += struct.pack("!BBII", 8, 10, value[0] & 0xFFFFFFFF, value[1] & 0xFFFFFFFF)
        elif kind == "sack":
            out += struct.pack("!BB", 5, 2 + 8 * len(value)) + b"".join(
                struct.pack("!II", a & 0xFFFFFFFF, b & 0xFFFFFFFF) for a, b in value)
        elif kind == "FO":                     # Fast Open (RFC 7413): the cookie, or none (a request)
            out += struct.pack("!BB", 34, 2 + len(value)) + value
        elif kind == "FOEXP":                  # the experimental form: kind 254, magic 0xF989
            out += struct.pack("!BBH", 254, 4 + len(value), 0xF989) + value
        else:
            raise TcplabError(f"TCP option {kind} cannot be sent")
    if len(out) % 4:
        out += b"\0" * (4 - len(out) % 4)     # padded with EOL, as packetdrill pads
    return out


def decode_options(raw: bytes) -> list:
    out, i = [], 0
    names = {v: k for k, v in OPT_KIND.items()}
    while i < len(raw):
        kind = raw[i]
        if kind in (0, 1):
            out.append((names[kind], None))
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2:
            break
        length = raw[i + 1]
        body = raw[i + 2:i + length]
        if kind == 2:
            out.append(("mss", struct.unpack("!H", body)[0]))
        elif kind == 3:
            out.append(("wscale", body[0]))
        elif kind == 4:
            out.append(("sackOK", None))
        elif kind == 8:
            out.append(("TS", struct.unpack("!II", body)))
        elif kind == 5:
            out.append(("sack", tuple(struct.unpack_from("!II", body, j) for j in range(0, len(body), 8))))
        elif kind == 34:
            out.append(("FO", bytes(body)))
        elif kind == 254 and body[:2] == b"\xf9\x89":
            out.append(("FOEXP", bytes(body[2:])))
        else:
            out.append((f"kind{kind}", body))
        i += length
    return out


def encode(f: Frame) -> bytes:
    """The IP packet of ``f``, checksums filled in."""
    opts = encode_options(f.options)
    off = (20 + len(opts)) // 4
    bits = sum(FLAG_BITS[n] for n in f.flags)
    tcp = struct.pack("!HHIIBBHHH", f.sport, f.dport, f.seq & 0xFFFFFFFF, f.ack & 0xFFFFFFFF, off << 4, bits,
                      f.win, 0, f.urg) + opts + f.payload
    if f.family == 4:
        src, dst = socket.inet_pton(socket.AF_INET, f.src), socket.inet_pton(socket.AF_INET, f.dst)
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        csum = _checksum(pseudo + tcp)
        tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, f.tos, 20 + len(tcp), 0, 0, f.ttl, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        return ip + tcp
    src, dst = socket.inet_pton(socket.AF_INET6, f.src), socket.inet_pton(socket.AF_INET6, f.dst)
    pseudo = src + dst + struct.pack("!II", len(tcp), 6)
    csum = _checksum(pseudo + tcp)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    ip = struct.pack("!IHBB16s16s", (6 << 28) | (f.tos << 20), len(tcp), 6, f.ttl, src, dst)
    return ip + tcp


def decode(packet: bytes, at: float) -> Frame | None:
    """The TCP segment in an IP packet (None: not TCP)."""
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0xF) * 4
        if packet[9] != 6:
            return None
        total = struct.unpack_from("!H", packet, 2)[0]
        family, tos, ttl = 4, packet[1], packet[8]
        src = socket.inet_ntop(socket.AF_INET, packet[12:16])
        dst = socket.inet_ntop(socket.AF_INET, packet[16:20])
        tcp = packet[ihl:total]
    elif version == 6:
        if packet[6] != 6:
            return None
        plen = struct.unpack_from("!H", packet, 4)[0]
        family, ttl = 6, packet[7]
        tos = (struct.unpack_from("!I", packet, 0)[0] >> 20) & 0xFF
        src = socket.inet_ntop(socket.AF_INET6, packet[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, packet[24:40])
        tcp = packet[40:40 + plen]
    else:
        return None
    sport, dport, seq, ack, off, bits, win, _, urg = struct.unpack_from("!HHIIBBHHH", tcp)
    hl = (off >> 4) * 4
    flags = flags_from_bits(bits)
    return Frame(at, family, src, dst, sport, dport, seq, ack, flags, win, urg, decode_options(tcp[20:hl]),
                 bytes(tcp[hl:]), ttl, tos)


class Tun:
    """``tun0`` in ``ns``, addressed and routed as packetdrill's runner sets it up: ``local_ip``
    on the device, the remote address reached through it."""

    def __init__(self, ns: Namespace, *, family: int, local_ip: str, prefixlen: int, remote_ip: str,
                 mtu: int = 1500):
        self.ns, self.family = ns, family
        self.frames: "queue.Queue[Frame]" = queue.Queue()
        self.fd = ns.run(self._create, local_ip, prefixlen, remote_ip, mtu)
        self.sniffer = ns.run(self._sniffer)
        self._stop_r, self._stop_w = os.pipe()
        self._reader = threading.Thread(target=self._read, name="tcplab-tun", daemon=True)
        self._reader.start()

    def _create(self, local_ip: str, prefixlen: int, remote_ip: str, mtu: int) -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", NAME.encode(), IFF_TUN | IFF_NO_PI | IFF_VNET_HDR))
            fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)
            ipr = _ipr(self.ns)
            ipr.link("set", index=1, state="up")
            (idx,) = ipr.link_lookup(ifname=NAME)
            ipr.link("set", index=idx, mtu=mtu)
            fam = socket.AF_INET if self.family == 4 else socket.AF_INET6
            ipr.addr("add", index=idx, address=local_ip, prefixlen=prefixlen, family=fam,
                     **({"flags": 0x02} if self.family == 6 else {}))      # IFA_F_NODAD
            ipr.link("set", index=idx, state="up")
            ipr.route("add", dst=f"{remote_ip}/{32 if self.family == 4 else 128}", oif=idx, family=fam)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _sniffer(self) -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.bind((NAME, ETH_P_ALL))
        except BaseException:
            s.close()
            raise
        return s

    def _read(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self.sniffer.fileno(), select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        space = socket.CMSG_SPACE(16)
        while True:
            for fd, _ in poller.poll():
                if fd == self._stop_r:
                    return
                try:
                    if fd == self.fd:          # the device's own queue: drained, the sniffer has them
                        os.read(self.fd, 65536 + VNET_HDR.size)
                        continue
                    data, anc, _, addr = self.sniffer.recvmsg(65536, space)
                except OSError:
                    return
                if addr[2] != PACKET_OUTGOING:
                    continue
                stamp = time.time()
                for level, kind, value in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack("=qq", value[:16])
                        stamp = sec + nsec / 1e9
                frame = decode(data, stamp)
                if frame is not None:
                    self.frames.put(frame)

    def send(self, frame: Frame, *, gso_mss: int = 0) -> None:
        """Inject ``frame`` as if it arrived from the wire; with ``gso_mss`` a segment larger than
        it arrives as a TSO segment that the kernel splits (packetdrill's ``--mss``)."""
        hdr = VNET_HDR.pack(0, 0, 0, 0, 0, 0)
        if gso_mss and frame.length > gso_mss:
            hdr = VNET_HDR.pack(0, GSO_TCPV4 if frame.family == 4 else GSO_TCPV6, 0, gso_mss, 0, 0)
        os.write(self.fd, hdr + encode(frame))

    def receive(self, timeout: float | None) -> Frame | None:
        try:
            return self.frames.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._reader.join(5)
        self.sniffer.close()
        for fd in (self.fd, self._stop_r, self._stop_w):
            os.close(fd)


def prefix_of(netmask: str) -> int:
    return ipaddress.ip_network(f"0.0.0.0/{netmask}").prefixlen
