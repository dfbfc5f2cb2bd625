"""The grader's side of assignment 1: a real kernel server on the lab's server host, the
student's client.py in the sandbox on the client host, captures at both ends."""
from __future__ import annotations

import socket
from dataclasses import dataclass, field

import pytest

from tcplab import Drop, TcplabError

PORT = 7788
REQUEST = "GET /quote?lang=tcp"
REPLY_SIZE = 48 * 1024


def reply_for(request: bytes) -> bytes:
    """48 KiB that depend on the request: a client that reads only part of it is caught."""
    head = b"REPLY to " + request + b"\n"
    body = bytes((i * 7 + len(request)) % 251 for i in range(REPLY_SIZE - len(head)))
    return head + body


@dataclass
class Exchange:
    """What happened when the student's client talked to the server."""
    outcome: object                 # tcplab.grading.Outcome of client.py
    request: bytes | None = None    # what the server read before the client's FIN (None: no FIN)
    reply: bytes = b""
    server_notes: list = field(default_factory=list)   # what the server saw go wrong
    conn: object = None             # tcplab Connection on PORT, or None
    client_state: str = "CLOSED"    # the client's socket once everything was done
    server_state: str = "CLOSED"

    def ladder(self) -> str:
        return self.conn.ladder() if self.conn is not None else "(no TCP connection to the server was seen)"

    def context(self) -> str:
        """What the student reads under every failure: the exchange and how their program ended."""
        parts = ["what was on the wire (packetdrill notation, > is your client):", self.ladder()]
        parts += [f"the server: {n}" for n in self.server_notes]
        parts.append(self.outcome.feedback(limit=600))
        return "\n".join(parts)


@pytest.fixture
def exchange(hosts, student):
    """``exchange(drops=[...])`` runs client.py once against the grader's server and returns an
    :class:`Exchange`."""
    def run(drops=()) -> Exchange:
        hosts.client.quickack()
        hosts.server.quickack()
        hosts.client.rto_min(20)
        hosts.server.rto_min(20)
        if drops:
            hosts.impair(drops=list(drops))
        box = student(hosts.client)
        notes: list[str] = []
        request = None
        with hosts.capture() as cap:
            server = hosts.server.listen(port=PORT)
            prog = box.start(["client.py", hosts.server.addr(4), str(PORT), REQUEST])
            wall = box.limits.wall
            try:
                peer = server.accept(timeout=wall)
            except TcplabError:
                peer = None
                notes.append(f"no connection arrived within {wall:g} s")
            if peer is not None:
                try:
                    request = peer.recv_eof(timeout=wall)
                except TcplabError:
                    notes.append(f"the request never ended: no FIN from your client within {wall:g} s")
                except OSError as exc:
                    notes.append(f"reading the request failed: {exc.strerror or exc}")
                if request is not None:
                    peer.sock.settimeout(wall)
                    try:
                        peer.sock.sendall(reply_for(request))
                    except OSError as exc:
                        notes.append(f"sending the reply failed: {exc.strerror or exc} (your client had "
                                     "closed its socket)")
                peer.close()
            outcome = box.wait(prog)
            if peer is not None and peer.peer is not None:
                # the close ends when the server's FIN is acknowledged (or reset)
                try:
                    peer.wait_state("CLOSED", timeout=2)
                except TcplabError:
                    pass
        ex = Exchange(outcome, request, server_notes=notes)
        if peer is not None:
            ex.server_state = peer.state()
            ex.client_state = peer.state(peer=True)
        ex.reply = reply_for(request) if request is not None else b""
        conns = cap.trace.connections(port=PORT)
        ex.conn = conns[0] if conns else None
        return ex
    return run


def drop_a_reply_segment():
    """The wire loses the server's 3rd data segment once (a pure-ACK-flagged segment with payload)."""
    return [Drop("<", ".", nth=3, payload=True)]
