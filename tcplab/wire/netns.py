"""Anonymous network namespaces, each served by one dedicated thread.

A namespace here is created by ``unshare(CLONE_NEWNET)`` inside a thread that then stays in it and
runs the callables it is handed (``ns.run(fn, ...)``).  Everything that must happen *inside* the
namespace goes through that thread:

* sockets (a socket belongs forever to the namespace of the thread that created it, and can then be
  used from any thread),
* pyroute2 handles (pyroute2 keeps one netlink transport per thread, so each namespace keeps its own
  ``IPRoute`` in its own thread),
* ``/proc/sys/net`` writes (resolved against the writing thread's namespace),
* child processes (``fork`` copies the calling thread's namespaces).

Nothing is ever mounted under ``/run/netns``: the namespace lives as long as this process holds a
reference to it (the thread, the fd kept on it, its sockets).  A crash or SIGKILL drops every
reference and the kernel reclaims the namespace with all its devices.  The root namespace is never
touched.
"""
from __future__ import annotations

import ctypes
import errno
import os
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


class NamespaceError(RuntimeError):
    """A namespace could not be created or used."""


def _unshare_net() -> None:
    if _libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        if err == errno.EPERM:
            raise NamespaceError(
                "unshare(CLONE_NEWNET) was refused (EPERM): tcplab needs root with CAP_SYS_ADMIN, "
                "CAP_NET_ADMIN and CAP_NET_RAW; run with sudo, e.g. sudo .venv/bin/python -m pytest labs/"
            )
        raise NamespaceError(f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}")


#: buckets of each lab namespace's own TCP hash table (``tcp_child_ehash_entries``)
CHILD_EHASH = 256
_nursery: list = []                    # [fd or None], made once per process
_nursery_lock = threading.Lock()


def nursery() -> int | None:
    """An fd on this process's *nursery* namespace (None where the kernel lacks what it needs).

    Every namespace shares the machine's TCP hash table unless the namespace that creates it
    sets ``net.ipv4.tcp_child_ehash_entries`` (Linux 6.1+), and sock_diag walks every bucket of
    it on each dump: 262 144 here, for a lab's two sockets (``tcp_diag_dump`` took 44 % of the
    catalogue's busy CPU, each ``wait_state`` a dump).  The root namespace must not change, so
    lab namespaces are created from an empty anonymous namespace of tcplab's own where that
    sysctl is set: each then has a table of :data:`CHILD_EHASH` buckets."""
    with _nursery_lock:
        if not _nursery:
            fut: Future = Future()

            def make():
                try:
                    _unshare_net()
                    with open("/proc/sys/net/ipv4/tcp_child_ehash_entries", "w") as f:
                        f.write(str(CHILD_EHASH))
                    fut.set_result(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
                except (OSError, NamespaceError):
                    fut.set_result(None)      # an older kernel, or refused: the shared table
            t = threading.Thread(target=make, name="tcplab-ns-nursery", daemon=True)
            t.start()
            t.join()
            _nursery.append(fut.result())
        return _nursery[0]


class Namespace:
    """One anonymous network namespace and the thread that lives in it."""

    def __init__(self, name: str):
        self.name = name
        self._jobs: "queue.SimpleQueue[tuple[Callable[[], Any], Future] | None]" = queue.SimpleQueue()
        self._started: Future = Future()
        self._closed = False
        self._finalizers: list[tuple[str, Callable[[], Any]]] = []
        self._thread = threading.Thread(target=self._serve, name=f"tcplab-ns-{name}", daemon=True)
        self._thread.start()  # the namespace is created in the background: see .fd

    @property
    def fd(self) -> int:
        """An fd on the namespace (waits for the thread to have created it)."""
        return self._started.result()

    def wait_created(self) -> "Namespace":
        """Block until the namespace exists; raises :class:`NamespaceError` if it could not be made."""
        self._started.result()
        return self

    # -- the namespace thread -------------------------------------------------------------
    def _serve(self) -> None:
        try:
            parent = nursery()
            if parent is not None and _libc.setns(parent, CLONE_NEWNET) != 0:
                raise NamespaceError(f"setns into tcplab's nursery namespace failed: "
                                     f"{os.strerror(ctypes.get_errno())}")
            _unshare_net()
            fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException as exc:  # reported to the constructor
            self._started.set_exception(exc)
            return
        self._started.set_result(fd)
        while True:
            job = self._jobs.get()
            if job is None:
                break
            fn, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    # -- API ------------------------------------------------------------------------------
    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> "Future[T]":
        self.wait_created()  # re-raises a failed creation here, with its message
        if self._closed:
            raise NamespaceError(f"namespace {self.name!r} is closed")
        fut: Future = Future()
        self._jobs.put((lambda: fn(*args, **kwargs), fut))
        return fut

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in this namespace's thread and return its result."""
        if threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result()

    def on_close(self, what: str, fn: Callable[[], Any]) -> None:
        """Register a clean-up to run (last in, first out) when the namespace closes."""
        self._finalizers.append((what, fn))

    def sysctl(self, key: str, value: Any = None) -> str:
        """Read, or write then read back, ``net.*`` sysctl ``key`` inside this namespace."""
        path = "/proc/sys/" + key.replace(".", "/")

        def _do() -> str:
            if value is not None:
                with open(path, "w") as f:
                    f.write(str(value))
            with open(path) as f:
                return f.read().strip()

        return self.run(_do)

    def has_sysctl(self, key: str) -> bool:
        return self.run(os.path.exists, "/proc/sys/" + key.replace(".", "/"))

    def close(self) -> list[str]:
        """Run the clean-ups, stop the thread and drop the fd.  Returns clean-up errors."""
        if self._closed:
            return []
        errors = []
        while self._finalizers:
            what, fn = self._finalizers.pop()
            try:
                self.run(fn)
            except Exception as exc:  # keep going: every clean-up must get its chance
                errors.append(f"{self.name}: {what}: {exc!r}")
        self._closed = True
        self._jobs.put(None)
        self._thread.join()
        if self._started.exception() is None:
            os.close(self.fd)
        return errors

    def __enter__(self) -> "Namespace":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Namespace {self.name} fd={self.fd}>"


def ipr(ns: "Namespace"):
    """The namespace's own IPRoute handle, created in (and only used from) its thread."""
    from pyroute2 import IPRoute
    h = getattr(ns, "_ipr", None)
    if h is None:
        h = ns._ipr = IPRoute()
        ns.on_close("IPRoute.close", h.close)
    return h
