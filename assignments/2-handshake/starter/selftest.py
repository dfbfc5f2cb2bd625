"""Try your handshake.py on a lab wire before you hand it in:  python selftest.py

It needs tcplab (your course's copy, installed with pip, or its checkout's .venv/bin/python), and
runs as root or as yourself (rootless).  It applies your rules.txt to the wire (the one rule the
README names), starts a listening socket on the server host, runs your program on the client host
and prints what crossed the wire (in the README's notation) and what the server's accept()
returned.  It gives no score: the graded tests are your instructor's.
"""
import sys
from pathlib import Path

from tcplab import Drop, TcplabError, Topology, WaitTimeout

PORT = 7789
HERE = Path(__file__).parent
RULES = {"drop outgoing rst": Drop(">", "R", count=1000)}

drops = []
for n, line in enumerate((HERE / "rules.txt").read_text().splitlines(), 1):
    rule = " ".join(line.split("#", 1)[0].lower().split())
    if rule and rule not in RULES:
        sys.exit(f"rules.txt, line {n} {line.strip()!r}: not a rule this lab knows (the only one: "
                 f"{', '.join(RULES)})")
    if rule:
        drops.append(RULES[rule])

with Topology() as lab:
    if drops:
        lab.impair(drops=drops)
    with lab.capture() as cap:
        listener = lab.server.listen(port=PORT)
        program = lab.client.popen([sys.executable, str(HERE / "handshake.py"), lab.server.addr(4), str(PORT)])
        try:
            peer = listener.accept(timeout=8)
        except TcplabError:
            peer = None
        try:
            program.wait(8)
        except WaitTimeout:
            pass
    conns = cap.trace.connections(port=PORT)
    print(conns[0].ladder() if conns else "(no segment reached the server's port)")
    print("\nthe server's accept(): " + (f"a connection in {peer.state()}" if peer else "nothing"))
    print(f"your program's output:\n{program.stdout}{program.stderr}")
