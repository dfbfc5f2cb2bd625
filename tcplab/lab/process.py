"""External programs (nc, socat, curl, python -m http.server, ...) run inside a host.

The program is started from the host's namespace thread, so it inherits that namespace.  Its
stdout and stderr go to files in the topology's work directory (no pipe can fill up and stall it).
Its lifetime is bound to the test: it is killed when the topology closes, and, through
``PR_SET_PDEATHSIG``, when the test process dies (even by SIGKILL)."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

from .. import tools
from ..errors import Unsupported, WaitTimeout

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child, before exec: the kernel kills it when the thread that started it dies."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def stop_group(proc: subprocess.Popen, grace: float, kill_wait: float | None = 5.0) -> None:
    """Stop a process started with ``start_new_session`` and everything in its group: SIGTERM,
    then SIGKILL if it is still there after ``grace`` seconds (then wait at most ``kill_wait``
    seconds, None: until it is gone)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, kill_wait)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


class Program:
    def __init__(self, host, argv: list[str], proc: subprocess.Popen, out: Path, err: Path):
        self.host, self.argv, self.proc = host, argv, proc
        self.stdout_path, self.stderr_path = out, err
        self.started = time.monotonic()     # a wall-clock limit counts from here

    @classmethod
    def start(cls, host, argv: list[str], *, stdin: bytes | None = None, env: dict | None = None,
              name: str | None = None) -> "Program":
        exe = tools.find(argv[0])
        if exe is None:
            raise Unsupported(tools.missing(argv[0], "a program this lab runs"))
        name = name or Path(argv[0]).name
        base = Path(host.topo.workdir) / f"{host.name}-{name}-{os.getpid()}-{id(argv) & 0xffff:x}"
        out, err = base.with_suffix(".out"), base.with_suffix(".err")

        def spawn():
            with open(out, "wb") as o, open(err, "wb") as e:
                return subprocess.Popen([exe, *argv[1:]], stdin=subprocess.PIPE if stdin is not None
                                        else subprocess.DEVNULL, stdout=o, stderr=e, env=env,
                                        preexec_fn=die_with_parent, start_new_session=True)
        proc = host.ns.run(spawn)
        if stdin is not None:
            proc.stdin.write(stdin)
            proc.stdin.close()
        return cls(host, argv, proc, out, err)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"{self.argv} in {self.host.name} still running after {timeout:g} s; "
                              f"stderr: {self.stderr[-500:]!r}") from None

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def close(self, grace: float = 2.0) -> None:
        """Stop the program (SIGTERM to its process group, SIGKILL after ``grace`` seconds)."""
        stop_group(self.proc, grace)
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()

    stop = close

    def __repr__(self) -> str:
        return f"<Program {' '.join(self.argv)} in {self.host.name} pid={self.proc.pid}>"
