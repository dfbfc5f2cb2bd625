"""Assignment 2: the three-way handshake by hand.  Usage: python handshake.py SERVER_IP PORT

Send a SYN with Scapy, read the server's SYN-ACK, and answer it with the right ACK, so that the
server's accept() returns a connection.  Read README.md first (and its part on the RST).
"""
import random
import sys

from scapy.all import IP, TCP, sr1


def main() -> int:
    server, port = sys.argv[1], int(sys.argv[2])
    sport = random.randint(20000, 60000)
    isn = random.randrange(2**32)
    synack = sr1(IP(dst=server) / TCP(sport=sport, dport=port, flags="S", seq=isn), timeout=3, verbose=False)
    if synack is None:
        print("no SYN-ACK came back", file=sys.stderr)
        return 1
    synack.show()
    # TODO: answer with the ACK that completes the handshake (which seq? which ack?)
    return 0


if __name__ == "__main__":
    sys.exit(main())
