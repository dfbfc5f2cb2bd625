"""What the kernel recorded while a capture ran: the one owner of a capture's state changes
(:mod:`tcplab.observe.states`) and sender samples (:mod:`tcplab.observe.sender`).

A capture makes one :class:`KernelRecord`, starts it with the capture and stops it after the
wire's flush; the capture's :class:`~tcplab.Trace` and each of its connections read it, each
connection picking its own two sockets.  A record that cannot be had says why, once, when a lab
asks for it (``Unsupported``: no tracing here; ``CaptureIncomplete``: the kernel dropped records).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import CaptureIncomplete, ConfigError, TcplabError, Unsupported

#: what :meth:`KernelRecord.sender` says when the capture was not asked to keep it
NOT_ASKED = ("the kernel's sender record was not kept: this capture was started without sender=True; "
             "start it with hosts.capture(sender=True) (or capture(bulk=True, sender=True)) to record it")


class KernelRecord:
    """The kernel's record of one capture's topology (empty, with a reason, until stopped)."""

    def __init__(self, why_not: str = "the kernel's record is kept by a capture of a topology"):
        self.changes: list | None = None          # StateChange, time order
        self.states_unavailable: str | None = why_not
        self.timewait: dict = {}                  # (local, remote) -> TIME_WAIT / FIN_WAIT_2
        self.foreign = 0                          # other sockets' state changes seen meanwhile
        self.samples: list | None = None          # SenderSample, time order
        self.sender_source: str | None = None
        #: why there are no samples: Unsupported before recording, CaptureIncomplete if the
        #: kernel dropped records, None once recorded
        self.sender_error: TcplabError | None = Unsupported(why_not)
        self._states = self._probes = self._sampler = None

    # -- recording --------------------------------------------------------------------
    def start(self, topo, *, sender: bool = False) -> None:
        """Record the state changes of ``topo``'s sockets, and with ``sender`` their sender record
        too (else :meth:`sender` says how to ask for it)."""
        from .sender import SAMPLED, TRACED, Sampler, probe_log
        from .states import state_log
        addresses = {h.addr(f) for h in topo for f in (4, 6)}
        try:
            self._states = state_log().subscribe(addresses)
        except Unsupported as exc:
            self.states_unavailable = exc.reason
        if not sender:
            self.sender_error = ConfigError(NOT_ASKED)
            return
        try:
            self._probes, self.sender_source = probe_log().subscribe(addresses), TRACED
        except Unsupported:
            self._sampler, self.sender_source = Sampler(topo), SAMPLED

    def stop(self, topo) -> None:
        """Stop recording; keep what the kernel said (a dropped record becomes the reason)."""
        from .perf import settle
        ours, fenced = None, None
        if self._states is not None:
            try:   # every CPU's record read up to a change of tcplab's own made after the lab's
                from .states import fence
                ours = fence(self._states, topo.client)
            except CaptureIncomplete as exc:
                fenced = exc
        if (self._states is not None and ours is None) or self._probes is not None:
            settle()       # the records of changes the lab already saw are all written
        states, self._states = self._states, None
        if states is not None:
            try:
                changes = [c for c in states.close() if not (c.local in (ours or ()) and "LISTEN" in (c.old, c.new))]
                if fenced is not None:
                    raise fenced
                self.changes = changes
                self.states_unavailable = None
                self.foreign = states.foreign
                self.timewait = {(tuple(sk.local), tuple(sk.remote)): sk.state for h in topo
                                 for sk in h.tcp_sockets() if sk.state in ("TIME_WAIT", "FIN_WAIT_2")}
            except CaptureIncomplete as exc:     # only labs that read states fail, with this reason
                self.states_unavailable = str(exc)
        probes, sampler, self._probes, self._sampler = self._probes, self._sampler, None, None
        try:
            if probes is not None:
                self.samples = probes.close()
            elif sampler is not None:
                self.samples = sampler.close()
            if probes is not None or sampler is not None:
                self.sender_error = None
        except CaptureIncomplete as exc:
            self.sender_error = exc

    def drop(self) -> None:
        """Stop recording without reading (a capture closed without stop())."""
        if self._states is not None:
            self._states.log.unsubscribe(self._states)
        if self._probes is not None:
            self._probes.log.unsubscribe(self._probes)
        if self._sampler is not None:
            try:
                self._sampler.close()
            except Exception:
                pass            # the capture is being abandoned: its record with it
        self._states = self._probes = self._sampler = None

    def save_sender(self, path: Path) -> Path | None:
        """Write the sender samples beside the pcaps, if there are any; the path written."""
        if not self.samples:
            return None
        from .sender import save
        save(path, self.samples, self.sender_source)
        return path

    # -- reading ----------------------------------------------------------------------
    def states_between(self, a: tuple, b: tuple) -> list:
        """The state changes of the sockets ``a -> b`` and ``b -> a``; Unsupported with the reason
        where there is no record (no tracing here, or the kernel dropped records)."""
        if self.changes is None:
            raise Unsupported(f"the kernel's state timeline is not available: {self.states_unavailable}")
        pairs = ((a, b), (b, a))
        return [e for e in self.changes if (e.local, e.remote) in pairs]

    def sender(self, local: tuple, remote: tuple):
        """The :class:`~tcplab.observe.sender.SenderRecord` of the socket ``local -> remote``."""
        from .sender import socket_record
        if self.samples is None:
            err = self.sender_error or Unsupported("nothing was recorded")
            if isinstance(err, ConfigError):
                raise ConfigError(str(err))
            what = "incomplete" if isinstance(err, CaptureIncomplete) else "not available"
            raise type(err)(f"the kernel's sender record is {what}: {err}")
        return socket_record(self.samples, self.sender_source, local, remote)

    def state_paths(self) -> list[list[str]]:
        """The textbook path of every connected socket whose state changes were recorded
        (listeners left out), one per socket; a socket whose record has a gap is left out
        (nothing can be claimed of it).  A tuple's timewait socket, if sock_diag shows one,
        belongs to the tuple's last socket."""
        from .states import gaps, textbook_path
        # a socket is its kernel address *and* its tuple: the kernel reuses a freed socket's memory
        by_sock: dict[tuple, list] = {}
        for c in self.changes or []:
            if c.remote[1]:
                by_sock.setdefault((c.sk, c.local, c.remote), []).append(c)
        last = {key[1:]: key for key, _ in sorted(by_sock.items(), key=lambda kv: kv[1][-1].time)}
        return [textbook_path(ch, self.timewait.get(key[1:]) if last[key[1:]] == key else None)
                for key, ch in by_sock.items() if not gaps(ch)]
