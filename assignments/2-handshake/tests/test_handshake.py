"""Assignment 2, graded on the wire: the student's hand-made handshake against a real kernel."""
import pytest


def _client_after_synack(conn):
    """The first segment the client sent after the server's SYN-ACK (not counting RSTs)."""
    i = next((i for i, s in enumerate(conn) if conn.side(s) == "server" and s.flags == {"SYN", "ACK"}), None)
    if i is None:
        return None
    return next((s for s in conn.segments[i + 1:] if conn.side(s) == "client" and "RST" not in s.flags), None)


@pytest.mark.lab(points=2, hint="flags='S' and nothing else; any seq you like (that is your ISN)")
def test_sends_a_syn(handshake):
    """The first segment is a SYN (SYN flag only) to the server's port."""
    conn = handshake.conn
    assert conn is not None, "no segment reached the server's port\n" + handshake.context()
    wrong = conn.compare("> S", conn.segments[0])     # any seq: that is the student's ISN
    assert not wrong, f"your first segment is {conn.line(conn.segments[0])}, expected a SYN: > S 0:0(0) (" + \
        "; ".join(f"{f} expected {e}, yours {a}" for f, e, a in wrong) + ")\n" + handshake.context()


@pytest.mark.lab(points=3, hint="the ACK's seq is your ISN + 1 (the SYN counts as one byte); its ack is the "
                                "server's ISN + 1")
def test_ack_numbers(handshake, score):
    """The answer to the SYN-ACK is > . 1:1(0) ack 1: ACK flag only, seq ISN+1, ack the server's ISN+1.
    One point per right field."""
    conn = handshake.conn
    assert conn is not None, "no segment reached the server's port\n" + handshake.context()
    ack = _client_after_synack(conn)
    assert ack is not None, "your client never answered the SYN-ACK\n" + handshake.context()
    differ = {field: (expected, actual) for field, expected, actual in conn.compare("> . 1:1(0) ack 1", ack)}
    wrong = []
    for field, right, means in (("flags", "the flags are right (ACK only)", "ACK only"),
                                ("seq", "seq is your ISN + 1", "relative to your ISN"),
                                ("ack", "ack is the server's ISN + 1", "relative to the server's ISN")):
        if field in differ:
            wrong.append(f"{field}: expected {differ[field][0]} ({means}), yours {differ[field][1]}")
        else:
            score.partial(1, right)
    assert not wrong, f"your answer {conn.line(ack)}, expected > . 1:1(0) ack 1\n" + "\n".join(wrong) + \
        "\n" + handshake.context()


@pytest.mark.lab(points=3, hint="the server's kernel completes the connection only when your ACK arrives "
                                "before anything else kills the half-open connection")
def test_server_accepts(handshake):
    """The server's accept() returns a connection in ESTABLISHED."""
    assert handshake.accepted and handshake.server_state == "ESTABLISHED", \
        f"the server's accept() {'returned a socket in ' + handshake.server_state if handshake.accepted else 'returned nothing'}" \
        "\n" + handshake.context()


@pytest.mark.lab(points=2, hint="README.md, 'The RST trap': your kernel resets a connection it never opened")
def test_no_reset_reaches_the_server(handshake):
    """The server got the SYN-ACK's answer, and no RST from the client host reached it."""
    conn = handshake.conn
    assert conn is not None and any(conn.side(s) == "server" and s.flags == {"SYN", "ACK"} for s in conn), \
        "the server never sent a SYN-ACK\n" + handshake.context()
    resets = [s for s in (conn.received or []) if conn.side(s) == "client" and "RST" in s.flags]
    assert not resets, f"a reset from your client host reached the server: {conn.line(resets[0])}\n" + \
        handshake.context()
