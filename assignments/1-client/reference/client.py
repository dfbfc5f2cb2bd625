"""Reference solution (instructors only): connect, send the request, half-close, read the whole
reply, close."""
import socket
import sys


def main() -> int:
    host, port, request = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)          # our FIN: "the request is complete"
        reply = bytearray()
        while chunk := s.recv(65536):       # b"" is the server's FIN
            reply += chunk
    sys.stdout.buffer.write(reply)
    return 0


if __name__ == "__main__":
    sys.exit(main())
