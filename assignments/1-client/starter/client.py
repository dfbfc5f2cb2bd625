"""Assignment 1: a TCP client.  Usage: python client.py SERVER_IP PORT REQUEST

Connect to the server, send REQUEST, tell the server the request is complete, read the whole
reply, write it to standard output, and close.  Read README.md first.
"""
import socket
import sys


def main() -> int:
    host, port, request = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(request)
    # TODO: the server answers only once it knows the request is complete.
    # TODO: read the whole reply and write it to sys.stdout.buffer.
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
