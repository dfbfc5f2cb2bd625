"""A scripted peer driven from Python: what a script alone cannot check.

The peer sends exactly the segments a lab names (tcplab's ScriptedPeer, the notation of
packetdrill scripts), and the lab asks the kernel's socket what its application sees.
"""
import errno
import socket

import pytest

from tcplab import ScriptedPeer

OPENING = """
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
   +0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
   +0 > S 0:0(0) <...>
"""


@pytest.mark.lab("R2", points=2)
def test_a_rst_answering_the_syn_refuses_the_connect(family):
    """A RST that acknowledges the SYN (ack = x+1) ends SYN_SENT: the application's connect()
    fails with ECONNREFUSED, and the kernel sends nothing more."""
    with ScriptedPeer(family=family) as peer:
        peer.do(OPENING + " +.01 < R. 0:0(0) ack 1 win 0\n")
        sock = peer.socket(3)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED
        assert peer.tcp_info(3)["tcpi_state"] == 7          # TCP_CLOSE


@pytest.mark.lab("H7", points=2)
def test_a_rst_with_a_wrong_ack_is_ignored_in_syn_sent(family):
    """RFC 9293 3.10.7.3: in SYN_SENT a RST counts only if it acknowledges the SYN; one with
    another ack is dropped, and the connection still opens when a right SYN-ACK comes.  (Linux
    also sends its SYN again at once, as after a SYN-ACK with a wrong ack: claim H7.)"""
    with ScriptedPeer(family=family) as peer:
        peer.do(OPENING + " +.01 < R. 0:0(0) ack 1001 win 0\n")
        assert peer.tcp_info(3)["tcpi_state"] == 2          # still TCP_SYN_SENT
        assert peer.socket(3).getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        peer.do("* > S 0:0(0) <...>\n")             # when: claim H7's script asserts it
        peer.do("+.01 < S. 0:0(0) ack 1 win 65535 <mss 1460>\n   +0 > . 1:1(0) ack 1\n")
        assert peer.tcp_info(3)["tcpi_state"] == 1          # TCP_ESTABLISHED
