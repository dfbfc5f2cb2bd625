"""TcpInfo: the fields of struct tcp_info a lab reads, at their offsets in include/uapi/linux/tcp.h."""
import struct

from tcplab import TcpInfo


def test_fields_come_from_their_offsets():
    head = bytes([1, 3, 2, 4, 5, 7, 0x79, 0])                # state .. options, wscales (snd 9, rcv 7)
    words = list(range(100, 124))                            # rto, ato, snd_mss, ... total_retrans
    info = TcpInfo.unpack(head + struct.pack("<24I", *words) + b"\xff" * 40)
    assert (info.ca_state, info.retransmits, info.probes, info.backoff, info.options) == (3, 2, 4, 5, 7)
    assert (info.snd_wscale, info.rcv_wscale) == (9, 7)
    assert (info.rto, info.ato, info.snd_mss, info.rcv_mss) == (100, 101, 102, 103)
    assert (info.unacked, info.sacked, info.lost, info.retrans) == (104, 105, 106, 107)
    assert (info.rtt, info.snd_ssthresh, info.snd_cwnd, info.advmss, info.reordering) == (115, 117, 118, 119, 120)
    assert info.total_retrans == 123


def test_a_short_answer_from_an_old_kernel_reads_as_zeros():
    info = TcpInfo.unpack(bytes([1, 0, 0, 0, 0, 0, 0, 0]) + struct.pack("<4I", 200000, 40000, 1448, 536))
    assert (info.rto, info.snd_mss, info.total_retrans) == (200000, 1448, 0)
