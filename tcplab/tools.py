"""The machine's programs that tcplab runs (nft, tcpdump, bwrap, qemu, ...), found where the
distribution installs them, and named with their package when they are missing.

Debian and Ubuntu install administration tools (``nft``, ``ip``, ``runc``) in ``/usr/sbin`` and
``/sbin``, which are not on an ordinary user's PATH: a login shell gets
``/usr/local/bin:/usr/bin:/bin`` (``ENV_PATH`` in ``/etc/login.defs``).  Those tools work for a
user who is root in a user namespace all the same, so tcplab looks there after the PATH, and
says "missing" only of a program that is nowhere.
"""
from __future__ import annotations

import os
import shutil

from .errors import Unsupported

#: where Debian and Ubuntu put programs an ordinary user's PATH leaves out
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

#: program -> the Debian package that installs it
PACKAGES = {
    "nft": "nftables", "tcpdump": "tcpdump", "bwrap": "bubblewrap", "setpriv": "util-linux",
    "prlimit": "util-linux", "unshare": "util-linux", "curl": "curl", "nc": "netcat-openbsd",
    "socat": "socat", "qemu-system-x86_64": "qemu-system-x86", "busybox": "busybox-static",
    "ip": "iproute2", "tshark": "tshark", "rsvg-convert": "librsvg2-bin", "chromium": "chromium",
}


def find(name: str) -> str | None:
    """The full path of program ``name``: on the PATH, else in the system folders; None if it is
    in neither."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SYSTEM_DIRS))


def require(name: str, needed_for: str = "") -> str:
    """The full path of program ``name``, or :class:`~tcplab.Unsupported` saying it is missing."""
    path = find(name)
    if path is None:
        raise Unsupported(missing(name, needed_for))
    return path


def install_hint(*names: str) -> str:
    """Who installs the packages of ``names``, and with which command, said to this user."""
    pkgs = " ".join(dict.fromkeys(PACKAGES.get(n, n) for n in names))
    if os.geteuid() == 0 and not in_user_namespace():
        return f"apt-get install {pkgs} (sudo ci/setup installs every package tcplab uses)"
    return (f"an administrator installs it: sudo apt-get install {pkgs} (or sudo ci/setup in this checkout); "
            "you cannot install system packages without sudo")


def missing(name: str, needed_for: str = "") -> str:
    """One line: program ``name`` is not installed, what needs it, and the fix."""
    where = ", ".join(["the PATH", *SYSTEM_DIRS])
    purpose = f" ({needed_for})" if needed_for else ""
    return f"the {name} command is not installed{purpose}: not found on {where}; {install_hint(name)}"


def in_user_namespace() -> bool:
    """True if this process is in a user namespace other than the machine's first one."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split()[:3] != ["0", "0", "4294967295"]
    except OSError:
        return False
