"""Reference solution (instructors only): the three-way handshake crafted with Scapy."""
import random
import sys

from scapy.all import IP, TCP, send, sr1


def main() -> int:
    server, port = sys.argv[1], int(sys.argv[2])
    sport = random.randint(20000, 60000)
    isn = random.randrange(2**32)
    synack = sr1(IP(dst=server) / TCP(sport=sport, dport=port, flags="S", seq=isn), timeout=3, verbose=False)
    if synack is None or TCP not in synack or synack[TCP].flags != "SA":
        print("no SYN-ACK came back", file=sys.stderr)
        return 1
    print(f"SYN-ACK: seq {synack[TCP].seq} ack {synack[TCP].ack}")
    send(IP(dst=server) / TCP(sport=sport, dport=port, flags="A", seq=isn + 1, ack=synack[TCP].seq + 1),
         verbose=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
