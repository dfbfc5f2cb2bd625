"""The grader's side of assignment 2: a real kernel listener on the server host; the student's
handshake.py runs in the sandbox on the client host with CAP_NET_RAW (and nothing else)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from tcplab import Drop, TcplabError

PORT = 7789
RULES = {"drop outgoing rst": Drop(">", "R", count=1000)}


def read_rules(path) -> list:
    """The submission's rules.txt as the wire's drops; a line the lab does not know fails with
    its number and text (the student fixes the file)."""
    drops = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        text = " ".join(line.split("#", 1)[0].lower().split())
        if not text:
            continue
        if text not in RULES:
            pytest.fail(f"rules.txt, line {n} {line.strip()!r}: not a rule this lab knows (the only one: "
                        f"{', '.join(RULES)})", pytrace=False)
        drops.append(RULES[text])
    return drops


@dataclass
class Handshake:
    outcome: object
    accepted: bool = False
    server_state: str = "CLOSED"
    conn: object = None
    notes: list = field(default_factory=list)

    def context(self) -> str:
        parts = ["what was on the wire (> is your client, the server's kernel answers):",
                 self.conn.ladder() if self.conn is not None else "(no segment to the server's port was seen)"]
        parts += [f"the server: {n}" for n in self.notes]
        parts.append(self.outcome.feedback(limit=600))
        return "\n".join(parts)


def accept_while_running(server, prog, wall: float):
    """accept() until a connection comes, or the student's program has ended (then half a second
    more for its last ACK to be processed), or the wall-clock limit."""
    deadline = prog.started + wall
    while time.monotonic() < deadline:
        exited = prog.proc.poll() is not None
        try:
            return server.accept(timeout=0.5 if exited else 0.2)
        except TcplabError:
            if exited:
                return None
    return None


@pytest.fixture
def handshake(hosts, student, submission):
    """Runs handshake.py once against a listening kernel socket."""
    drops = read_rules(submission / "rules.txt")
    if drops:
        hosts.impair(drops=drops)
    box = student(hosts.client)
    with hosts.capture() as cap:
        server = hosts.server.listen(port=PORT)
        prog = box.start(["handshake.py", hosts.server.addr(4), str(PORT)])
        result = Handshake(None)
        peer = accept_while_running(server, prog, box.limits.wall)
        if peer is None:
            result.notes.append("accept() returned no connection while your program ran")
        result.outcome = box.wait(prog)
        if peer is not None:
            result.accepted = True
            result.server_state = peer.state()
    conns = cap.trace.connections(port=PORT)
    result.conn = conns[0] if conns else None
    return result
