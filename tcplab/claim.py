"""Machine-wide numbers held by a live process (a topology's subnet, a sandbox's uid).

A number is held by binding an abstract unix socket named after it: the kernel frees the name when
the holder closes the socket or dies (even by SIGKILL), and no file is left anywhere.
"""
from __future__ import annotations

import socket


class Claim:
    """The first free number of ``count`` (tried from ``start``, wrapping), held until
    :meth:`release`.  ``None`` as :attr:`number` if all are taken (the caller says why)."""

    def __init__(self, name: str, count: int, start: int = 0):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.number: int | None = None
        for i in range(count):
            n = (start + i) % count
            try:
                self._sock.bind(f"\0tcplab-{name}-{n}")
            except OSError:
                continue
            self.number = n
            return
        self._sock.close()

    def release(self) -> None:
        self._sock.close()
