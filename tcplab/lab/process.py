"""External programs (nc, socat, curl, python -m http.server, ...) run inside a host.

The program is started from the host's namespace thread, so it inherits that namespace.  Its
stdout and stderr go to files in the topology's work directory (no pipe can fill up and stall it).
Its lifetime is bound to the test: it is killed when the topology closes, and, through
``PR_SET_PDEATHSIG``, when the test process dies (even by SIGKILL)."""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
from pathlib import Path

from ..errors import Unsupported, WaitTimeout

PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Program:
    def __init__(self, host, argv: list[str], proc: subprocess.Popen, out: Path, err: Path):
        self.host, self.argv, self.proc = host, argv, proc
        self.stdout_path, self.stderr_path = out, err

    @classmethod
    def start(cls, host, argv: list[str], *, stdin: bytes | None = None, env: dict | None = None,
              name: str | None = None) -> "Program":
        exe = shutil.which(argv[0])
        if exe is None:
            raise Unsupported(f"program {argv[0]!r} is not installed (run ci/setup, or apt-get install it)")
        name = name or Path(argv[0]).name
        base = Path(host.topo.workdir) / f"{host.name}-{name}-{os.getpid()}-{id(argv) & 0xffff:x}"
        out, err = base.with_suffix(".out"), base.with_suffix(".err")

        def spawn():
            with open(out, "wb") as o, open(err, "wb") as e:
                return subprocess.Popen([exe, *argv[1:]], stdin=subprocess.PIPE if stdin is not None
                                        else subprocess.DEVNULL, stdout=o, stderr=e, env=env,
                                        preexec_fn=_child_setup, start_new_session=True)
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
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()

    stop = close

    def __repr__(self) -> str:
        return f"<Program {' '.join(self.argv)} in {self.host.name} pid={self.proc.pid}>"
