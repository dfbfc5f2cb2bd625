"""Student code runs here: inside a lab host's network namespace, as an unprivileged user, with
only the capability it needs, and bounded in wall-clock time, CPU, memory, processes and files.

It is composed from well-tested parts rather than a hand-written chain of setuid and chroot:

``prlimit``   (util-linux) sets the resource limits, inherited by everything below;
``bwrap``     (bubblewrap, as used by Flatpak) gives a fresh mount, PID, IPC and UTS namespace with
              a read-only ``/usr`` and Python, an empty ``/tmp``, and one writable folder: a *copy*
              of the submission at ``/home/student``.  Nothing else of the grader's machine is
              visible (no checkout, no reference solution, no hidden tests, no /root).
              ``--die-with-parent`` and the PID namespace make sure that when the sandbox's
              first process dies, every process the student started dies with it;
``setpriv``   (util-linux) drops to a uid of its own (one per concurrent sandbox, so a fork bomb
              meets RLIMIT_NPROC alone) with no capability but the ones asked for (CAP_NET_RAW
              for raw sockets), kept across exec as ambient capabilities, and no_new_privs.

Rootless (a user namespace that maps only the grader's own uid, see :mod:`tcplab.lab.where`), no
other uid exists: the student's program keeps the grader's uid, which outside is the user's own
and owns nothing the sandbox shows, with no capability but the assignment's and no_new_privs;
its process limit counts the user's tasks, so it is set to what the user runs now plus
``Limits.processes``.

The network namespace is the lab host's (a process started from the host's namespace thread
inherits it), so the student's traffic is on the lab's wire and captured at both ends.  Without
CAP_NET_ADMIN the student cannot change even that namespace's routes, links or firewall, and the
root namespace is out of sight.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .. import tools
from ..errors import ConfigError, Unsupported, check_int
from ..lab.process import Program

#: uids used for sandboxes: one per concurrent sandbox on the machine
UID_BASE, UID_COUNT = 61000, 1000
CAPABILITIES = ("net_raw",)
HOME = "/home/student"
# read-only files of /etc that Python and Scapy read (names, protocols, the loader's cache)
ETC_FILES = ("passwd", "group", "hosts", "protocols", "services", "nsswitch.conf", "ld.so.cache",
             "localtime", "host.conf", "gai.conf", "mime.types")


@dataclass(frozen=True)
class Limits:
    """What one run of student code may use.  ``wall`` and ``cpu`` in seconds, sizes in MiB."""
    wall: float = 10.0
    cpu: int = 10
    memory_mb: int = 1024
    processes: int = 64
    file_mb: int = 16
    open_files: int = 256

    def __post_init__(self):
        if isinstance(self.wall, bool) or not isinstance(self.wall, (int, float)) or not 0 < self.wall <= 3600:
            raise ConfigError(f"wall={self.wall!r} is out of range: seconds, above 0 and at most 3600")
        check_int("cpu", self.cpu, 1, 3600, "1 to 3600 seconds of CPU time")
        check_int("memory_mb", self.memory_mb, 64, 65536, "64 to 65536 MiB of address space")
        check_int("processes", self.processes, 1, 4096, "1 to 4096 processes")
        check_int("file_mb", self.file_mb, 1, 4096, "1 to 4096 MiB per file written")
        check_int("open_files", self.open_files, 16, 65536, "16 to 65536 open files")

    def scaled(self, factor: float) -> "Limits":
        """These limits with the wall-clock and CPU times ``factor`` times as long."""
        import dataclasses
        import math
        return dataclasses.replace(self, wall=self.wall * factor, cpu=min(3600, math.ceil(self.cpu * factor)))

    def prlimit_args(self, tasks_now: int = 0) -> list[str]:
        """``tasks_now``: tasks the sandbox's uid already runs (RLIMIT_NPROC counts them all)."""
        mib = 1024 * 1024
        return [f"--as={self.memory_mb * mib}", f"--nproc={tasks_now + self.processes}", f"--cpu={self.cpu}:{self.cpu + 1}",
                f"--fsize={self.file_mb * mib}", f"--nofile={self.open_files}", "--core=0"]


@dataclass
class Outcome:
    """How a sandboxed run ended, and what it printed (the last MiB of each stream)."""
    returncode: int | None
    stdout_bytes: bytes
    stderr_bytes: bytes
    timed_out: bool = False
    wall: float = 0.0

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode(errors="replace")

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def describe(self) -> str:
        """One line for a student: how the program ended."""
        if self.timed_out:
            return f"your program was still running after {self.wall:g} s and was stopped"
        if self.returncode == 0:
            return "your program exited normally (status 0)"
        code = self.returncode
        if code is not None and (code < 0 or 128 < code < 128 + 32):
            # bwrap (the sandbox's first process) reports a child killed by signal N as 128+N
            import signal
            sig = signal.Signals(-code if code < 0 else code - 128).name
            why = {"SIGXCPU": " (CPU time limit)", "SIGKILL": " (killed: a limit was reached)",
                   "SIGSEGV": " (segmentation fault)", "SIGABRT": " (aborted)"}.get(sig, "")
            return f"your program was killed by {sig}{why}"
        return f"your program exited with status {self.returncode}"

    def feedback(self, limit: int = 1500) -> str:
        """How it ended plus the end of its output, as a student reads it."""
        parts = [self.describe()]
        for name, raw in (("stdout", self.stdout_bytes), ("stderr", self.stderr_bytes)):
            text = raw[-limit * 4:].decode(errors="replace").strip()
            if text:
                if len(text) > limit:
                    text = "...\n" + text[-limit:]
                parts.append(f"{name} of your program:\n{text}")
        return "\n".join(parts)


#: the programs the sandbox runs (bubblewrap, util-linux)
SANDBOX_TOOLS = ("bwrap", "setpriv", "prlimit")


def require_tools() -> None:
    for tool in SANDBOX_TOOLS:
        tools.require(tool, "the sandbox for student code")


#: what student code may import besides the standard library (assignment 2 sends with Scapy)
STUDENT_PACKAGES = ("scapy",)


def python_prefix() -> tuple[str, list[str]]:
    """The interpreter student code runs with (this one, so Scapy is there) and the folders it
    needs read-only besides /usr."""
    exe = sys.executable
    binds = []
    if sys.prefix != sys.base_prefix:     # a venv: its folder (site-packages, pyvenv.cfg)
        binds.append(sys.prefix)
    for p in (sys.base_prefix, os.path.dirname(os.path.realpath(exe))):
        if not p.startswith("/usr"):
            binds.append(p)
    return exe, binds + [p for p in package_roots() if not any(_inside(p, b) for b in binds)]


@lru_cache(maxsize=None)
def package_roots() -> tuple[str, ...]:
    """The sys.path folders that hold :data:`STUDENT_PACKAGES`, outside /usr: a user's
    ``pip install --user`` site, or a folder a ``.pth`` file adds.  Only those folders: the
    grader's other paths (the assignment's hidden tests) stay out of the sandbox.  Found once
    per process (the grader's sys.path does not change), not once per sandboxed program."""
    import importlib.util
    roots = []
    for name in STUDENT_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = os.path.dirname(os.path.realpath(list(spec.submodule_search_locations)[0]))
        if not root.startswith("/usr/") and root not in roots:
            roots.append(root)
    return tuple(roots)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


class Sandbox:
    """One sandboxed run: ``Sandbox(host, submission, workdir).start(["client.py", ...])``.

    ``submission``: the student's folder; it is copied (never bound) into ``workdir``, which is
    the only writable path the student sees (as /home/student).  ``caps``: capabilities kept
    (only ``"net_raw"`` exists).  Each start returns a :class:`Program` bound to the test."""

    def __init__(self, host, submission: Path, workdir: Path, *, caps: tuple[str, ...] = (),
                 limits: Limits = Limits()):
        require_tools()
        bad = [c for c in caps if c not in CAPABILITIES]
        if bad:
            raise ConfigError(f"caps={bad!r}: the sandbox grants only {', '.join(CAPABILITIES)}")
        submission = Path(submission)
        if not submission.is_dir():
            raise ConfigError(f"submission {submission}: no such folder (give the folder with the student's files)")
        self.scale = time_scale()
        self.host, self.caps, self.limits = host, tuple(caps), limits.scaled(self.scale)
        from ..claim import Claim
        self._uid = Claim("sandbox-uid", UID_COUNT, start=os.getpid() % UID_COUNT)   # freed when we exit
        if self._uid.number is None:
            raise Unsupported(f"all {UID_COUNT} sandbox uids from {UID_BASE} are in use on this machine")
        self.uid = UID_BASE + self._uid.number
        self.own_uid = not uid_mapped(self.uid)     # rootless: only the grader's uid exists here
        if self.own_uid:
            self.uid = os.geteuid()
        self.home = Path(workdir) / "student"
        if self.home.exists():
            shutil.rmtree(self.home)
        shutil.copytree(submission, self.home, symlinks=False,
                        ignore=lambda d, names: [n for n in names if Path(d, n).is_symlink()])
        for dirpath, dirnames, filenames in ([] if self.own_uid else os.walk(self.home)):
            for n in [dirpath] + [os.path.join(dirpath, f) for f in dirnames + filenames]:
                os.lchown(n, self.uid, self.uid)
        self.programs: list[Program] = []
        host._closables.append(self)   # closed with the topology, like the host's programs

    def argv(self, command: list[str]) -> list[str]:
        exe, binds = python_prefix()
        if command and command[0].endswith(".py"):
            command = [exe, *command]
        elif command and command[0] == "python":
            command = [exe, *command[1:]]
        bw = [tools.require("bwrap", "the sandbox for student code"), "--die-with-parent", "--new-session",
              "--unshare-pid", "--unshare-ipc", "--unshare-uts",
              "--unshare-cgroup-try", "--hostname", "student",
              "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
              "--symlink", "usr/lib", "/lib"]
        if os.path.isdir("/usr/lib64"):
            bw += ["--symlink", "usr/lib64", "/lib64"]
        bw += ["--perms", "0755", "--dir", "/etc"]
        for f in ETC_FILES:
            bw += ["--ro-bind-try", f"/etc/{f}", f"/etc/{f}"]
        # /proc, /dev and /tmp first: a bind below /tmp (a venv in a checkout there) goes on top
        bw += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
        made = {"/tmp"}
        for b in binds:
            # the folders above a bind are made 0755 (bwrap would copy /root's 0700 and hide Python)
            for a in reversed(Path(b).parents[:-1]):
                if str(a) not in made:
                    made.add(str(a))
                    bw += ["--perms", "0755", "--dir", str(a)]
            bw += ["--ro-bind", b, b]
        bw += ["--perms", "0755", "--dir", str(Path(HOME).parent), "--bind", str(self.home), HOME, "--chdir", HOME, "--clearenv",
               "--setenv", "HOME", HOME, "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
               "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "PYTHONUNBUFFERED", "1",
               "--setenv", "LANG", "C.UTF-8",
               "--cap-drop", "ALL"]     # bwrap run by root keeps every capability unless told
        roots = package_roots()
        if roots:                      # found through a .pth or the user's site, which differ inside
            bw += ["--setenv", "PYTHONPATH", os.pathsep.join(roots)]
        for cap in ("SETUID", "SETGID", "SETPCAP", *(c.upper() for c in self.caps)):   # one per flag
            bw += ["--cap-add", f"CAP_{cap}"]
        keep = "".join(f",+{c}" for c in self.caps)
        # rootless: no other uid to drop to, and setgroups() is denied in the user namespace
        sp = ["setpriv", *([] if self.own_uid else [f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]),
              f"--inh-caps=-all{keep}", f"--bounding-set=-all{keep}", "--no-new-privs"]
        if self.caps:
            sp.append(f"--ambient-caps={keep.lstrip(',')}")
        limits = self.limits.prlimit_args(tasks_now=user_tasks(self.uid) if self.own_uid else 0)
        return [tools.require("prlimit", "the sandbox for student code"), *limits, *bw, "--", *sp, "--", *command]

    def start(self, command: list[str], *, name: str = "student") -> Program:
        """Start ``command`` in the sandbox (``["client.py", "198.18.0.2", "7788"]`` runs that file
        of the submission with the grader's Python)."""
        prog = Program.start(self.host, self.argv(command), name=name)
        self.programs.append(prog)
        return prog

    def run(self, command: list[str], *, name: str = "student", wall: float | None = None) -> Outcome:
        """Run ``command`` to its end (or until the wall-clock limit, then stop it)."""
        return self.wait(self.start(command, name=name), wall=wall)

    def wait(self, prog: Program, *, wall: float | None = None) -> Outcome:
        """Wait for a started program to end, at most the wall-clock limit from its start; then
        stop it (and everything it started) and say how it ended."""
        limit = self.limits.wall if wall is None else wall * self.scale
        left = max(0.0, prog.started + limit - time.monotonic())
        timed_out = False
        try:
            prog.proc.wait(left)
        except subprocess.TimeoutExpired:
            timed_out = True
        prog.close(grace=0.5)
        took = limit if timed_out else round(time.monotonic() - prog.started, 3)
        return Outcome(prog.proc.returncode, _tail(prog.stdout_path), _tail(prog.stderr_path), timed_out, took)

    def close(self) -> list[str]:
        errors = []
        for prog in self.programs:
            try:
                prog.close(grace=0.5)
            except Exception as exc:  # report, do not hide the other cleanups
                errors.append(f"stopping {prog}: {exc!r}")
        self._uid.release()
        return errors


def time_scale() -> float:
    """How many times slower than a real CPU student code runs here: 1, or what tcplab's VM puts in
    TCPLAB_TIME_SCALE (an emulated CPU, a container's CPU quota).  Time limits exist to stop a
    hang or a spin, not to judge speed, so they stretch by this much."""
    text = os.environ.get("TCPLAB_TIME_SCALE", "1")
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 1 <= value <= 100:
        raise ConfigError(f"TCPLAB_TIME_SCALE={text!r} is out of range: a number from 1 to 100")
    return value


def uid_mapped(uid: int) -> bool:
    """Whether ``uid`` exists in this process's user namespace (always, outside one)."""
    try:
        with open("/proc/self/uid_map") as f:
            ranges = [tuple(map(int, line.split())) for line in f if line.strip()]
    except OSError:
        return True
    return any(inside <= uid < inside + count for inside, _, count in ranges)


def user_tasks(uid: int) -> int:
    """Tasks (threads included: RLIMIT_NPROC counts them) whose real uid is ``uid``."""
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
            real = int(status.split("\nUid:")[1].split()[0])
            threads = int(status.split("\nThreads:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
        if real == uid:
            n += threads
    return n


def _tail(path: Path, limit: int = 1024 * 1024) -> bytes:
    """The last ``limit`` bytes of a program's output file (a student may print gigabytes)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - limit))
        return f.read()
