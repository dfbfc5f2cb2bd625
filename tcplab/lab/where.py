"""Where this process can build a lab network, and how it gets there.

Three ways, tried in this order, by trying rather than by guessing from uids or distributions:

``root``      the process may create network namespaces as it is (root with CAP_SYS_ADMIN and
              CAP_NET_ADMIN: ``sudo``, a privileged container, a CI runner);
``rootless``  it may not, but it may create a *user* namespace in which a network namespace with
              a veth and a bridge works.  The process enters that user namespace and is root
              there, and only there: its uid outside stays the user's, every file it writes is the
              user's, and nothing of the machine's own namespaces becomes reachable.  An
              unprivileged user namespace can exist and still be powerless (Ubuntu 24.04's
              AppArmor restriction refuses a veth with EPERM), so the probe builds a veth and a
              bridge, not just the namespace;
``vm``        neither (Docker's default seccomp profile refuses unshare() and namespace flags to
              clone()): the work goes into a VM booted by QEMU (:mod:`tcplab.lab.vm`), where
              the guest is root.

Each probe runs in a forked child, so a failed try leaves this process as it was.  A user
namespace can only be entered by a process with a single thread (unshare(2) refuses
CLONE_NEWUSER otherwise): :func:`enter` is called before any thread starts (the pytest plugin's
``pytest_configure``, the start of ``tcplab grade``), and its children (xdist workers, the
grader's pytest runs) inherit it.
"""
from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
from dataclasses import dataclass

from ..tools import in_user_namespace

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
ROOT, ROOTLESS, VM = "root", "rootless", "vm"
#: set in the VM guest's environment by tcplab.lab.vm
GUEST_ENV = "TCPLAB_GUEST"
#: TCPLAB_USERNS=0 keeps a non-root process out of a user namespace (it then cannot build labs)
USERNS_ENV = "TCPLAB_USERNS"

_libc = ctypes.CDLL(None, use_errno=True)

#: what each mode cannot do here, said in the report header and by ``tcplab doctor``
LIMITS = {
    ROOT: "",
    ROOTLESS: "the kernel's tracepoints (its record of states and of the sender: the labs that read it "
              "skip, naming the fix), loading kernel modules, writing machine-wide sysctls",
    VM: "QEMU emulates the CPU where KVM is unusable: expect runs several times slower",
}


@dataclass(frozen=True)
class Access:
    """How this process builds labs (``mode``), or why it cannot (``mode`` is None, ``why``)."""
    mode: str | None
    why: str = ""

    @property
    def ok(self) -> bool:
        return self.mode is not None


def current() -> str | None:
    """The mode this process is already in, without probing: ``vm`` inside tcplab's guest,
    ``rootless`` in a user namespace where it is root, ``root`` as root, else None."""
    if os.environ.get(GUEST_ENV) == "1":
        return VM
    if os.geteuid() == 0:
        return ROOTLESS if in_user_namespace() else ROOT
    return None


def _map_self(uid: int, gid: int) -> None:
    """Map this process's uid and gid to root in the user namespace it just created."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def _unshare(flags: int, what: str) -> None:
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare({what}) was refused ({errno.errorcode.get(err, err)}: {os.strerror(err)})")


def _build_probe_lab() -> None:
    """A veth pair and a bridge in a fresh network namespace of this (child) process, and one of
    the per-namespace sysctls tcplab pins (a container may mount /proc/sys read-only)."""
    _unshare(CLONE_NEWNET, "CLONE_NEWNET")
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname="p0", kind="veth", peer={"ifname": "p1"})
            ipr.link("add", ifname="pbr", kind="bridge")
        except Exception as exc:
            raise OSError(f"a veth or bridge was refused in the new network namespace ({exc})") from None
    path = "/proc/sys/net/ipv4/tcp_ecn"
    try:
        with open(path) as f:
            value = f.read()
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise OSError(f"the namespace's sysctls cannot be written ({path}: {exc.strerror})") from None


def _in_child(fn, timeout: float = 20.0) -> str | None:
    """Run ``fn`` in a forked child; None if it worked, else the one-line reason it gave."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: never returns
        code = 0
        try:
            os.close(r)
            fn()
        except BaseException as exc:
            os.write(w, (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)).encode()[:2000])
            code = 1
        os._exit(code)
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return f"the probe did not finish within {timeout:g} s"
        chunks = []
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return None
    return b"".join(chunks).decode(errors="replace") or f"the probe ended with status {status}"


def probe_as_is() -> str | None:
    """Why this process cannot build a lab network as it is (None: it can)."""
    return _in_child(_build_probe_lab)


def probe_user_namespace() -> str | None:
    """Why a user namespace of this process's user cannot build a lab network (None: it can)."""
    if os.environ.get(USERNS_ENV) == "0":
        return f"{USERNS_ENV}=0 is set"
    uid, gid = os.getuid(), os.getgid()

    def inside():
        _unshare(CLONE_NEWUSER, "CLONE_NEWUSER")
        _map_self(uid, gid)
        _build_probe_lab()
    return _in_child(inside)


def threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def enter() -> None:
    """Enter a new user namespace as its root (this process and every child it starts later).
    The process must have one thread."""
    if threads() != 1:
        raise OSError(errno.EINVAL, f"this process has {threads()} threads; a user namespace can only be "
                                    "entered by a process with one (enter it before any thread starts)")
    uid, gid = os.getuid(), os.getgid()
    _unshare(CLONE_NEWUSER, "CLONE_NEWUSER")
    _map_self(uid, gid)
    # Inside, getpwuid() says "root": what names its files after the user (pytest's
    # /tmp/pytest-of-USER) must keep the user's own name, not take real root's folder.
    try:
        import pwd
        name = pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        name = str(uid)
    os.environ["LOGNAME"] = os.environ["USER"] = name


_arranged: Access | None = None


def arranged() -> Access | None:
    """What :func:`arrange` (or :func:`inherit`) decided for this process; None before."""
    return _arranged


def inherit() -> Access:
    """For a child of a process that arranged (an xdist worker): its mode, without probing (a
    user namespace is inherited)."""
    global _arranged
    mode = current()
    _arranged = Access(mode, "" if mode else "see the controller's header")
    return _arranged


def arrange() -> Access:
    """Make this process able to build labs, the fastest way that works here: as it is (root),
    else in a user namespace it enters now (rootless).  Where neither works, the Access says why
    (the caller offers the VM)."""
    global _arranged
    _arranged = _arrange()
    return _arranged


def no_lab_here(access: Access) -> str:
    """One line: why labs cannot run here, and the two ways that do."""
    return (f"tcplab cannot build a lab network here ({access.why}). Run as root (sudo .venv/bin/python -m pytest "
            "...; in Docker: --privileged), or in a VM: add --tcplab-vm (needs  sudo ci/setup --vm  once; slower)")


def _outer_uid() -> int:
    """This process's uid outside its user namespace."""
    with open("/proc/self/uid_map") as f:
        return int(f.read().split()[1])


def describe(access: Access, *, backend: str | None = None, seed: int | None = None) -> list[str]:
    """What a run here gets, in lines (pytest's report header): the kernel and mode, the impairment
    backend, the seed, the state record, the TCP settings pinned in every namespace.  Probes a
    namespace; never raises (a header must never break a run)."""
    import platform
    if not access.ok:
        return [f"tcplab: kernel {platform.release()}, mode none: {access.why}"]
    limits = LIMITS[access.mode]
    lines = [f"tcplab: kernel {platform.release()}, mode {access.mode}"
             + (" (root inside a user namespace of uid %d, not on the machine)" % _outer_uid()
                if access.mode == ROOTLESS else "")
             + (f"; cannot here: {limits}" if limits else "")]
    try:
        from .. import settings
        from ..observe.states import unavailable
        from ..wire.impair import chosen_backend, probe_netem
        from ..wire.netns import Namespace
        with Namespace("probe") as ns:
            applied = {k.key: (k.value if ns.has_sysctl(k.key) else "absent on this kernel")
                       for k in settings.TCP_KNOBS}
        lines.append(f"tcplab: impairment backend {chosen_backend(backend)} (sch_netem: {probe_netem()[1]})")
        lines.append(f"tcplab: random impairments seeded with {seed} (--tcplab-seed)" if seed is not None else
                     "tcplab: random impairments get a fresh seed per test, shown in its failure and "
                     "JUnit properties (replay: --tcplab-seed N)")
        why = unavailable()
        lines.append(f"tcplab: state timeline: unavailable ({why}); labs that need the exact sequence of "
                     "states skip, state checks poll sock_diag" if why else
                     "tcplab: state timeline: the kernel's sock:inet_sock_set_state tracepoint (perf_event_open)")
        lines.append("tcplab: TCP settings pinned in every lab namespace:")
        lines += settings.describe(applied)
    except Exception as exc:
        lines.append(f"tcplab: could not probe namespaces: {exc}")
    return lines


def _arrange() -> Access:
    mode = current()
    if mode in (VM, ROOTLESS):
        return Access(mode)
    import pyroute2  # noqa: F401  (once here, not in each probe's child; it starts no thread)
    why = probe_as_is()
    if why is None:
        return Access(ROOT)
    why_userns = probe_user_namespace()
    if why_userns is None:
        try:
            enter()
        except OSError as exc:
            why_userns = exc.strerror or str(exc)
        else:
            return Access(ROOTLESS)
    return Access(None, f"network namespaces: {why}; a user namespace: {why_userns}")
