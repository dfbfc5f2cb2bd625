"""What a packetdrill script may name, and what tcplab refuses: system call constants, the
unsupported features (refused by line and name before anything runs), and the names a ``%{ }%``
block reads (``tcpi_*``, ``SK_MEMINFO_*``).  Used by the runner, :mod:`tcplab.lab.pkt`."""
from __future__ import annotations

import ctypes
import errno as errno_mod
import os
import socket

from ..errors import ConfigError
from ..observe.tcpinfo import TCP_INFO_SIZE, tcp_info_values
from ..script import BitOr, Field, Script, Symbol

_libc = ctypes.CDLL(None, use_errno=True)


# -- names a script may use ---------------------------------------------------------------------

def _symbols() -> dict[str, int]:
    names: dict[str, int] = {}
    for mod in (socket, os, errno_mod):
        for k in dir(mod):
            v = getattr(mod, k)
            if k.isupper() and isinstance(v, int) and not isinstance(v, bool):
                names.setdefault(k, int(v))
    names.update(SOL_TCP=6, SOL_IP=0, SOL_IPV6=41, SIOCINQ=0x541B, SIOCOUTQ=0x5411, FIONREAD=0x541B,
                 SO_ZEROCOPY=60, SO_MEMINFO=55, TCP_INQ=36, TCP_CM_INQ=36, O_RDWR=os.O_RDWR,
                 O_NONBLOCK=os.O_NONBLOCK, MSG_EOR=0x80, MSG_MORE=0x8000, MSG_DONTWAIT=0x40, MSG_PEEK=2,
                 MSG_ZEROCOPY=0x4000000, MSG_ERRQUEUE=0x2000, SHUT_RD=0, SHUT_WR=1, SHUT_RDWR=2, IP_RECVERR=11, IPV6_RECVERR=25, TCP_USER_TIMEOUT=18,
                 TCP_NOTSENT_LOWAT=25, TCP_CONGESTION=13, TCP_MAXSEG=2, TCP_NODELAY=1, TCP_CORK=3,
                 TCP_KEEPIDLE=4, TCP_KEEPINTVL=5, TCP_KEEPCNT=6, TCP_SYNCNT=7, TCP_LINGER2=8, TCP_QUICKACK=12,
                 TCP_WINDOW_CLAMP=10, TCP_INFO=11, TCP_DEFER_ACCEPT=9, TCP_THIN_LINEAR_TIMEOUTS=16,
                 POLLIN=1, POLLPRI=2, POLLOUT=4, POLLERR=8, POLLHUP=16, POLLNVAL=32, POLLRDNORM=0x40,
                 POLLWRNORM=0x100, POLLRDHUP=0x2000, F_GETFL=3, F_SETFL=4, F_GETFD=1, F_SETFD=2,
                 TCP_FASTOPEN=23, TCP_FASTOPEN_CONNECT=30, TCP_FASTOPEN_KEY=33, TCP_FASTOPEN_NO_COOKIE=34,
                 MSG_FASTOPEN=0x20000000, IP_FREEBIND=15, IPV6_FREEBIND=78)
    return names


SYMBOLS = _symbols()
ERRNO_NAMES = dict(errno_mod.errorcode)        # 11 -> "EAGAIN"

#: a segment's ECN marks (``[ect0]``), as packetdrill writes them: the IP header's two ECN bits
IP_MARKS = {"noecn": 0, "ect1": 1, "ect0": 2, "ce": 3}

#: what tcplab does not run yet, refused by name (a feature: where it shows)
UNSUPPORTED_OPTIONS = {"md5": "TCP-MD5 (RFC 2385)",
                       "ECN": "AccECN", "exp": "experimental TCP options"}
UNSUPPORTED_SYMBOLS = {"SO_TIMESTAMPING": "SO_TIMESTAMPING", "TCP_MD5SIG": "TCP-MD5 (RFC 2385)",
                       "TCP_ZEROCOPY_RECEIVE": "zero-copy receive", "SCM_TIMESTAMPING": "SO_TIMESTAMPING",
                       "TCP_TX_DELAY": "TCP_TX_DELAY", "SO_TXTIME": "SO_TXTIME", "TCP_ULP": "TCP ULPs (kTLS)",
                       "TCP_REPAIR": "TCP_REPAIR", "TCP_AO_ADD_KEY": "TCP-AO"}
SYSCALLS = {"socket", "bind", "listen", "accept", "connect", "read", "write", "send", "recv", "sendto",
            "recvfrom", "sendmsg", "close", "shutdown", "setsockopt", "getsockopt", "fcntl", "ioctl", "poll",
            "writev", "readv"}
UNSUPPORTED_SYSCALLS = {"recvmsg": "recvmsg (its control messages: timestamps, zero-copy, inq)",
                        "sendfile": "sendfile", "splice": "splice", "epoll_create": "epoll",
                        "epoll_ctl": "epoll", "epoll_wait": "epoll", "open": "files (open)",
                        "pipe": "pipes", "socketpair": "socketpair", "getsockname": "getsockname",
                        "getpeername": "getpeername"}
#: --send_omit_free: never reuse a send buffer (zero-copy may still read it); tcplab never does
KNOWN_OPTIONS = {"send_omit_free", "tolerance_usecs", "tolerance_percent", "mss", "tcp_ts_tick_usecs", "ip_version", "mtu",
                 "local_ip", "remote_ip", "gateway_ip", "netmask_ip", "bind_port", "connect_port", "define", "D"}
UNSUPPORTED_CONFIG = {"so": "packetdrill's --so",
                      "wire_server": "wire mode", "wire_client": "wire mode", "tcp_ts_ecr_scaled": "--tcp_ts_ecr_scaled",
                      "speed": "--speed (ethtool on tun0)", "persist": "--persist", "non_fatal": "--non_fatal"}


def refusals(script: Script) -> list[tuple[int, str]]:
    """(line, what) for everything in ``script`` tcplab does not run, in script order."""
    out = []
    for key in script.options:
        name = key.split("=")[0]
        if name in UNSUPPORTED_CONFIG:
            out.append((0, f"{UNSUPPORTED_CONFIG[name]} is not supported"))
        elif name not in KNOWN_OPTIONS:
            out.append((0, f"the option --{name} is not supported"))
    for ev in script.events:
        if ev.kind == "refused":
            out.append((ev.line, ev.text))
        elif ev.kind == "other_packet":
            out.append((ev.line, f"{ev.text.split()[0].upper()} packets are not supported"))
        elif ev.kind == "packet":
            p = ev.packet
            for o in p.options or ():
                if o.kind not in ("nop", "eol", "mss", "wscale", "sackOK", "sack", "TS", "FO", "FOEXP"):
                    out.append((ev.line, f"{UNSUPPORTED_OPTIONS.get(o.kind, 'the TCP option ' + o.kind)} is not "
                                         "supported"))
            other = [w for w, _ in p.ip if w not in IP_MARKS and w not in ("tos", "ect01")]
            if other:
                out.append((ev.line, f"IP header marks ({', '.join(other)}) are not supported"))
        elif ev.kind == "syscall":
            sc = ev.syscall
            if sc.name in UNSUPPORTED_SYSCALLS:
                out.append((ev.line, f"{UNSUPPORTED_SYSCALLS[sc.name]} is not supported"))
            elif sc.name not in SYSCALLS:
                out.append((ev.line, f"the system call {sc.name} is not supported"))
            for sym in _symbols_in(sc.args):
                if sym in UNSUPPORTED_SYMBOLS:
                    out.append((ev.line, f"{UNSUPPORTED_SYMBOLS[sym]} is not supported ({sym})"))
                elif sym not in SYMBOLS and not sym.startswith(("msg_", "iov_", "fd", "events", "revents",
                                                                "l_", "tcpi_")):
                    out.append((ev.line, f"the name {sym} is not known"))
        elif ev.kind == "code" and "tcpi_" not in ev.text and "SK_MEMINFO" not in ev.text:
            pass
    return out


def _symbols_in(v):
    if isinstance(v, Symbol):
        yield v.name
    elif isinstance(v, BitOr):
        for p in v.parts:
            yield from _symbols_in(p)
    elif isinstance(v, list):
        for p in v:
            yield from _symbols_in(p)
    elif isinstance(v, dict):
        for p in v.get("__struct__", []):
            yield from _symbols_in(p)
    elif isinstance(v, Field):
        yield from _symbols_in(v.value)


def _int(v) -> int:
    if isinstance(v, Symbol):
        return SYMBOLS[v.name]
    if isinstance(v, BitOr):
        out = 0
        for p in v.parts:
            out |= _int(p)
        return out
    if isinstance(v, int):
        return v
    raise ConfigError(f"{v!r} is not a number")


# -- what a %{ }% block reads -----------------------------------------------------------------

#: the symbolic names packetdrill gives a %{ }% block (code.c write_symbols): tcpi_state's values,
#: tcpi_ca_state's, tcpi_options' bits (include/uapi/linux/tcp.h, packetdrill's tcp.h)
CODE_NAMES = dict(TCP_ESTABLISHED=1, TCP_SYN_SENT=2, TCP_SYN_RECV=3, TCP_FIN_WAIT1=4, TCP_FIN_WAIT2=5,
                  TCP_TIME_WAIT=6, TCP_CLOSE=7, TCP_CLOSE_WAIT=8, TCP_LAST_ACK=9, TCP_LISTEN=10, TCP_CLOSING=11,
                  TCP_CA_Open=0, TCP_CA_Disorder=1, TCP_CA_CWR=2, TCP_CA_Recovery=3, TCP_CA_Loss=4,
                  TCPI_OPT_TIMESTAMPS=1, TCPI_OPT_SACK=2, TCPI_OPT_WSCALE=4, TCPI_OPT_ECN=8, TCPI_OPT_ECN_SEEN=16,
                  TCPI_OPT_SYN_DATA=32, TCPI_OPT_USEC_TS=64, TCPI_OPT_TFO_CHILD=128)
SK_MEMINFO = ("RMEM_ALLOC", "RCVBUF", "WMEM_ALLOC", "SNDBUF", "FWD_ALLOC", "WMEM_QUEUED", "OPTMEM", "BACKLOG",
              "DROPS")


def socket_state(fd: int) -> dict:
    """The names a ``%{ }%`` block reads: ``tcpi_*`` (TCP_INFO, only the fields this kernel
    returns: a check of one it lacks fails by name, as packetdrill built for it would), packetdrill's symbolic names (:data:`CODE_NAMES`) and ``SK_MEMINFO_*`` (SO_MEMINFO)."""
    buf = ctypes.create_string_buffer(TCP_INFO_SIZE)
    n = ctypes.c_uint32(TCP_INFO_SIZE)
    if _libc.getsockopt(fd, 6, 11, buf, ctypes.byref(n)) != 0:
        raise OSError(ctypes.get_errno(), "getsockopt(TCP_INFO)")
    values = {**tcp_info_values(buf.raw[:n.value], filled_only=True), **CODE_NAMES}
    mem = (ctypes.c_uint32 * len(SK_MEMINFO))()
    n = ctypes.c_uint32(ctypes.sizeof(mem))
    if _libc.getsockopt(fd, 1, 55, mem, ctypes.byref(n)) == 0:
        values.update({f"SK_MEMINFO_{k}": mem[i] for i, k in enumerate(SK_MEMINFO)})
    return values
