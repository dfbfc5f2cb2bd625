"""Try your client.py on a lab wire before you hand it in:  python selftest.py

It needs tcplab (your course's copy, installed with pip, or its checkout's .venv/bin/python), and
runs as root or as yourself (rootless).  It plays the server as the README describes it: it reads
your request until your FIN, then sends a 48 KiB reply and closes.  It prints what your client put
on the wire (in the README's notation) and what it printed.  It gives no score: the graded tests
are your instructor's.
"""
import sys
import threading
from pathlib import Path

from tcplab import TcplabError, Topology, WaitTimeout

REQUEST, PORT = "GET /quote?lang=tcp", 7788
REPLY = bytes(i % 251 for i in range(48 * 1024))
CLIENT = Path(__file__).with_name("client.py")

with Topology() as lab:
    got = {}
    with lab.capture() as cap:
        listener = lab.server.listen(port=PORT)

        def serve():
            try:
                peer = listener.accept(timeout=10)
                got["request"] = peer.recv_eof(timeout=10)      # everything until your FIN
                peer.sock.sendall(REPLY)
                peer.close()
            except (TcplabError, OSError) as exc:               # what the server saw go wrong
                got["trouble"] = getattr(exc, "strerror", None) or str(exc)
        threading.Thread(target=serve, daemon=True).start()
        client = lab.client.popen([sys.executable, str(CLIENT), lab.server.addr(4), str(PORT), REQUEST])
        try:
            status = client.wait(10)
        except WaitTimeout:
            status = "still running after 10 s"
    conns = cap.trace.connections(port=PORT)
    print(conns[0].ladder() if conns else "(your client never connected to the server)")
    print(f"\nthe server received {got.get('request')!r}; the README asks for {REQUEST!r}")
    if "trouble" in got:
        print(f"the server: {got['trouble']} (your client had closed its socket, or never sent its FIN)")
    printed = Path(client.stdout_path).read_bytes()
    print(f"your client printed {len(printed)} bytes of the {len(REPLY)}-byte reply"
          + (", all of them" if printed == REPLY else ", not the same bytes"))
    print(f"its exit status: {status}")
