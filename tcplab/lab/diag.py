"""TCP socket states from the kernel, through sock_diag (pyroute2's DiagSocket), per namespace."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable

from ..errors import ConfigError, TcplabError
from ..errors import hide_config_errors as __tracebackhide__  # noqa: F401  (pytest)
from ..wait import until

#: Kernel TCP states (include/net/tcp_states.h).  NEW_SYN_RECV is how Linux keeps a half-open
#: connection (a request socket); textbooks, and tcplab, call it SYN_RECV.
STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT_1", 5: "FIN_WAIT_2",
          6: "TIME_WAIT", 7: "CLOSED", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
          12: "SYN_RECV"}
NAMES = set(STATES.values())


@dataclass(frozen=True)
class SockInfo:
    state: str
    local: tuple
    remote: tuple
    retrans: int
    timer: int
    expires_ms: int


def _norm(addr: tuple) -> tuple:
    return (str(ipaddress.ip_address(addr[0])), int(addr[1]))


def list_tcp(host) -> list[SockInfo]:
    """Runs in the host's namespace thread (where its sock_diag socket is made, at the first call)."""
    from ..observe.sockdiag import dump, open_diag
    sock = getattr(host, "_diag", None)
    if sock is None:
        sock = host._diag = open_diag()
        host.ns.on_close("sock_diag socket", sock.close)
    try:
        rows = dump(sock)
    except OSError as exc:
        raise TcplabError(f"sock_diag refused the TCP socket dump in {host.name}: {exc.strerror}") from None
    return [SockInfo(STATES.get(r.state, str(r.state)), r.local, r.remote, r.retrans, r.timer, r.expires_ms)
            for r in rows]


def state_of(socks: Iterable[SockInfo], local: tuple, remote: tuple) -> str:
    local, remote = _norm(local), _norm(remote)
    for s in socks:
        if s.local == local and s.remote == remote:
            return s.state
    return "CLOSED"


def _check(states: Iterable[str]) -> tuple[str, ...]:
    states = tuple(states)
    bad = [s for s in states if s not in NAMES]
    if bad or not states:
        raise ConfigError(f"unknown TCP state(s) {bad or '(none given)'}: use " + ", ".join(sorted(NAMES)))
    return states


def wait_state(host, local: tuple, remote: tuple, states: Iterable[str], timeout: float) -> str:
    """Poll sock_diag until the connection is in one of ``states``; return the state reached."""
    states = _check(states)
    seen: list[str] = []

    def check():
        st = state_of(host.tcp_sockets(), local, remote)
        if not seen or seen[-1] != st:
            seen.append(st)
        return st if st in states else None
    try:
        return until(check, timeout, f"{host.name} {local}->{remote} to reach {'/'.join(states)}")
    except TimeoutError as exc:
        raise type(exc)(f"{exc}; states seen in order: {' -> '.join(seen)}") from None


def wait_listening(host, port: int, family: int, timeout: float, program=None) -> None:
    """Poll sock_diag until something listens on ``port``.  With ``program`` (a
    :class:`tcplab.lab.process.Program`), fail at once if it exits first, with its output."""
    def check():
        if program is not None and program.proc.poll() is not None:
            raise TcplabError(f"{' '.join(program.argv)} exited with status {program.proc.returncode} before "
                              f"listening on port {port}; its stderr: {program.stderr[-800:]!r}")
        return any(s.state == "LISTEN" and s.local[1] == port and (":" in s.local[0]) == (family == 6)
                   for s in host.tcp_sockets())
    until(check, timeout, f"a listener on {host.name} port {port} (IPv{family})"
          + (f" from {' '.join(program.argv)}" if program is not None else ""))


class StatePoller:
    """The states of chosen connections, sampled from sock_diag every :attr:`EVERY` seconds
    until :meth:`stop`.

    The fallback where the kernel's state tracepoint cannot be used (no tracing, or segments
    released by a qdisc timer, whose state changes the tracepoint may not deliver).  It sees a
    state only if it lasts longer than one period: labs use it where each state is held open by
    the wire (``Topology.cross_next()`` holds every segment for 33 ms at the least, 8 periods).
    A timewait socket is seen as TIME_WAIT, and a socket that is gone as CLOSED.  It samples
    every EVERY seconds, not without a pause: a poller must not take a core from the labs
    beside it.

    ``conns``: ``{name: conn}`` (each a :class:`~tcplab.Conn`); :attr:`seen` maps each name to its
    states in order.
    """

    EVERY = 0.004

    def __init__(self, conns: dict):
        import threading
        from ..observe.sockdiag import open_diag
        self.conns = {}
        for k, c in conns.items():
            self.conns[k] = (c.host, _norm(tuple(c.local)), _norm(tuple(c.peer)))
        self.seen: dict[str, list[str]] = {k: [] for k in conns}
        hosts = {id(h): h for h, _, _ in self.conns.values()}
        self._socks = {key: h.ns.run(open_diag) for key, h in hosts.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcplab-state-poller", daemon=True)
        self._error: BaseException | None = None
        for host, _, _ in self.conns.values():   # the lab's report lists what its pollers saw
            if self not in host.topo.pollers:
                host.topo.pollers.append(self)
        self._sample()
        self._thread.start()

    def _sample(self) -> None:
        from ..observe.sockdiag import dump
        tables = {key: {(r.local, r.remote): STATES.get(r.state, str(r.state)) for r in dump(sock)}
                  for key, sock in self._socks.items()}
        for name, (host, local, remote) in self.conns.items():
            st = tables[id(host)].get((local, remote), "CLOSED")
            seen = self.seen[name]
            if st == "TIME_WAIT" and seen[-2:-1] in (["FIN_WAIT_1"], ["FIN_WAIT_2"], ["CLOSING"]) \
                    and seen[-1] == "CLOSED":
                # a dump that ran while the full socket gave way to its timewait socket finds
                # neither: not a state it was in
                seen.pop()
            if not seen or seen[-1] != st:
                seen.append(st)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.EVERY):
                self._sample()
        except BaseException as exc:  # re-raised by stop()
            self._error = exc

    def stop(self) -> dict[str, list[str]]:
        """Stop polling (once; later calls return the same states) and close the sockets."""
        if not self._socks:
            return self.seen
        self._stop.set()
        self._thread.join()
        try:
            if self._error is not None:
                raise self._error
            self._sample()
        finally:
            for sock in self._socks.values():
                sock.close()
            self._socks = {}
        return self.seen
