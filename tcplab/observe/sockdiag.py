"""TCP sockets of a namespace through sock_diag, read with one raw netlink socket and ``struct``.

pyroute2's DiagSocket decodes every message with its general netlink machinery: about a
millisecond a dump.  The pollers that sample a lab's sockets every few milliseconds (the state
poller, the sampled sender record) use this instead: a few tens of microseconds, from any thread
(a netlink socket answers for the namespace it was made in).
"""
from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import NamedTuple

NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, NLMSG_DONE, NLMSG_ERROR = 4, 20, 3, 2
NLM_F_REQUEST_DUMP = 0x1 | 0x300
INET_DIAG_INFO = 2
ALL_STATES = 0xFFFFFFFF
_NLMSG = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBBI48x")                     # inet_diag_req_v2, any socket id
_MSG = struct.Struct("=BBBB2H16s16sI8x5I")           # inet_diag_msg


class Row(NamedTuple):
    """One socket of a dump."""
    state: int                  # include/net/tcp_states.h
    local: tuple                # (address, port)
    remote: tuple
    timer: int                  # idiag_timer: 1 retransmit/probe, 2 keepalive, 3 TIME_WAIT, 4 zero window
    retrans: int
    expires_ms: int
    info: object = None         # TcpInfo, where asked for and the socket is a full one


def open_diag() -> socket.socket:
    """Run it in a host's namespace thread: a sock_diag socket that answers for that namespace."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)


def dump(sock: socket.socket, states: int = ALL_STATES, *, info: bool = False) -> list[Row]:
    """A :class:`Row` for every TCP socket in ``states`` (a bit mask of include/net/tcp_states.h
    numbers) of the socket's namespace, IPv4 then IPv6; ``info``: with each full socket's
    ``struct tcp_info``."""
    from .tcpinfo import TcpInfo
    out = []
    for family in (socket.AF_INET, socket.AF_INET6):
        body = _REQ.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1) if info else 0, 0, states)
        sock.send(_NLMSG.pack(_NLMSG.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST_DUMP, 0, 0) + body)
        done = False
        while not done:
            data = sock.recv(65536)
            off = 0
            while off + _NLMSG.size <= len(data):
                length, kind = _NLMSG.unpack_from(data, off)[:2]
                if kind == NLMSG_DONE:
                    done = True
                    break
                if kind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", data, off + _NLMSG.size)[0]
                    raise OSError(err, f"sock_diag refused the TCP socket dump: {os.strerror(err)} "
                                  "(the kernel lacks tcp_diag: modprobe tcp_diag)")
                m = off + _NLMSG.size
                fam, state, timer, retrans, sport, dport, src, dst, _if, expires = _MSG.unpack_from(data, m)[:10]
                size = 4 if fam == socket.AF_INET else 16
                local = (str(ipaddress.ip_address(src[:size])), socket.ntohs(sport))
                remote = (str(ipaddress.ip_address(dst[:size])), socket.ntohs(dport))
                tcp_info = None
                a = m + _MSG.size
                while info and a + 4 <= off + length:
                    alen, atype = struct.unpack_from("=HH", data, a)
                    if atype == INET_DIAG_INFO:
                        tcp_info = TcpInfo.unpack(data[a + 4:a + alen])
                    a += (alen + 3) & ~3
                out.append(Row(state, local, remote, timer, retrans, expires, tcp_info))
                off += (length + 3) & ~3
    return out
