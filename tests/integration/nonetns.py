"""Run a command the way a locked-down container does: a seccomp filter (as in Docker's default
profile) makes unshare() fail with EPERM, so no network namespace can be created; with
``--no-perf``, perf_event_open() fails instead (a container without perf events).
Usage: python nonetns.py [--no-perf] COMMAND [ARGS...]   (x86_64 only)"""
import ctypes
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
NR_UNSHARE, NR_PERF_EVENT_OPEN = 272, 298              # x86_64
args = sys.argv[1:]
deny = NR_UNSHARE
if args and args[0] == "--no-perf":
    deny, args = NR_PERF_EVENT_OPEN, args[1:]
LD_NR, JEQ, RET = 0x20, 0x15, 0x06
ALLOW, EPERM = 0x7FFF0000, 0x00050000 | 1

prog = [(LD_NR, 0, 0, 0), (JEQ, 0, 1, deny), (RET, 0, 0, EPERM), (RET, 0, 0, ALLOW)]
buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in prog))


class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or \
        libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(Fprog(len(prog), ctypes.addressof(buf))), 0, 0):
    sys.exit(f"seccomp: {os.strerror(ctypes.get_errno())}")
os.execvp(args[0], args)
