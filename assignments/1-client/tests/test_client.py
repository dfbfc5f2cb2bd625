"""Assignment 1, graded on the wire: the student's client.py against a real kernel server.

Every test runs the client once, in the sandbox on the client host, and judges what it put on
the wire (both ends are captured) and what it printed.  Feedback is what the student reads.
"""
import pytest

from conftest import REQUEST, drop_a_reply_segment


@pytest.mark.lab(points=1, hint="socket.create_connection() makes your kernel do the handshake for you")
def test_handshake(exchange):
    """The client opens the connection with the three-way handshake."""
    ex = exchange()
    assert ex.conn is not None, "your client never connected to the server\n" + ex.context()
    ex.conn.expect("""
        > S 0:0(0)
        < S. 0:0(0) ack 1
        > . 1:1(0) ack 1
    """, complete=False)


@pytest.mark.lab(points=1, hint="send the request's bytes exactly as given in argv[3], nothing more")
def test_request_delivered(exchange):
    """The server receives exactly the request."""
    ex = exchange()
    assert ex.request is not None, "the server never saw the end of your request\n" + ex.context()
    assert ex.request == REQUEST.encode(), \
        f"the server received {ex.request[:80]!r}, expected {REQUEST!r}\n" + ex.context()


@pytest.mark.lab(points=2, hint="socket.shutdown(socket.SHUT_WR) sends your FIN but keeps the socket open "
                                "for reading")
def test_half_close_before_reply(exchange, score):
    """The client half-closes: its FIN comes after the request and before the reply, and the
    server's data still flows after it."""
    ex = exchange()
    conn = ex.conn
    assert conn is not None, "your client never connected\n" + ex.context()
    fins = [i for i, s in enumerate(conn) if conn.side(s) == "client" and "FIN" in s.flags]
    assert fins, "your client never sent a FIN: the server waits for the end of the request forever\n" + \
        ex.context()
    score.partial(1, "your client sends a FIN")
    first_fin = fins[0]
    data_after = [s for s in conn.segments[first_fin:] if conn.side(s) == "server" and s.length]
    assert data_after, "no reply data followed your FIN\n" + ex.context()
    resets = [s for s in conn.segments[first_fin:] if conn.side(s) == "client" and "RST" in s.flags]
    assert not resets, f"your client answered the reply with a reset ({conn.line(resets[0])}): it had " \
        "closed the whole socket, not only its sending side\n" + ex.context()


@pytest.mark.lab(points=2, hint="read in a loop until recv() returns b'' (the server's FIN), then write "
                                "everything to sys.stdout.buffer")
def test_whole_reply_read(exchange, score):
    """The client prints the whole reply, byte for byte, and exits with status 0."""
    ex = exchange()
    assert ex.request is not None, "the server never saw the end of your request, so it never replied\n" + \
        ex.context()
    got, expected = ex.outcome.stdout_bytes, ex.reply
    if got[:len(expected) // 2] == expected[:len(expected) // 2] and len(got) >= len(expected) // 2:
        score.partial(1, "the first half of the reply is right")
    assert got == expected, \
        f"your client printed {len(got)} bytes; the reply has {len(expected)}\n" + ex.context()
    assert ex.outcome.ok, ex.outcome.describe()


@pytest.mark.lab(points=2, hint="an RST means data was lost: closing a socket with unread data makes "
                                "the kernel reset the connection")
def test_close_with_fin_not_rst(exchange, score):
    """Both sides close with a FIN; nobody sends a RST."""
    ex = exchange()
    conn = ex.conn
    assert conn is not None, "your client never connected\n" + ex.context()
    sides_fin = {conn.side(s) for s in conn if "FIN" in s.flags}
    rsts = [s for s in conn if "RST" in s.flags]
    if "client" in sides_fin:
        score.partial(1, "your client closes with a FIN")
    assert not rsts, f"the connection was reset: {conn.line(rsts[0])}\n" + ex.context()
    assert sides_fin == {"client", "server"}, "both sides must send a FIN\n" + ex.context()


@pytest.mark.lab(points=1, hint="the side that sends the first FIN waits in TIME_WAIT")
def test_time_wait_on_client(exchange):
    """The client closed first, so its socket waits in TIME_WAIT; the server's is gone."""
    ex = exchange()
    assert ex.conn is not None, "your client never connected\n" + ex.context()
    assert ex.client_state == "TIME_WAIT" and ex.server_state == "CLOSED", \
        f"after the close your client's socket is {ex.client_state} and the server's {ex.server_state}; " \
        "expected TIME_WAIT and CLOSED\n" + ex.context()


@pytest.mark.lab(points=1, hint="TCP repairs the loss for you, as long as you keep reading until EOF")
def test_reply_survives_a_lost_segment(exchange):
    """The wire loses one segment of the reply; the client still prints all of it."""
    ex = exchange(drops=drop_a_reply_segment())
    assert ex.request is not None, "the server never saw the end of your request\n" + ex.context()
    lost = ex.conn.lost() if ex.conn is not None else []
    assert lost or not ex.reply, "(grader) the wire was told to lose a reply segment and lost none"
    assert ex.outcome.stdout_bytes == ex.reply and ex.outcome.ok, \
        f"with one reply segment lost on the wire your client printed {len(ex.outcome.stdout_bytes)} of " \
        f"{len(ex.reply)} bytes\n" + ex.context()
