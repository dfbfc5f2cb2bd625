"""The command line: ``tcplab COMMAND`` (console script) or ``python -m tcplab COMMAND``.

Exit codes, the same for every command: 0 ok, 1 a check failed (a lab, a soak run, a missing
capability), 2 usage error, 4 the environment cannot run this (not root, no namespaces, no QEMU).
"""
from __future__ import annotations

import importlib
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENV = 0, 1, 2, 4

#: command -> (module under tcplab.cli, one-line summary)
COMMANDS = {
    "doctor": ("doctor", "what this machine can do for the labs (exit 0 when the labs can run)"),
    "coverage": ("coverage", "run the labs and write the claim -> lab -> result table (docs/coverage.md)"),
    "vm": ("vm", "run pytest inside a VM booted from another kernel (Debian's, with sch_netem)"),
    "soak": ("soak", "run a selection N times in a row; failures per test, wall times"),
    "ladder": ("ladder", "draw the ladder diagram of a pcap's connections (text, or --svg OUT)"),
    "tsg": ("tsg", "draw the time-sequence graph of a pcap's connections (SVG: segments, ACK and window lines, SACK)"),
    "analyze": ("analyze", "Wireshark's TCP analysis counts per connection of a pcap (retransmissions, dup ACKs...)"),
    "states": ("states", "draw RFC 9293's state diagram coloured by what the labs observed (docs/states.*)"),
    "grade": ("grade", "grade submissions of an assignment: results.json per student, grades.csv"),
    "pkt": ("pkt", "run packetdrill scripts with tcplab's scripted peer (a drop-in for packetdrill; a folder, -n N)"),
    "bundle": ("bundle", "build a Gradescope autograder zip (setup.sh + run_autograder) for an assignment"),
}


def pcap_command(prog: str, doc: str):
    """The parser every command that reads a pcap starts from (``ladder``, ``analyze``, ``tsg``):
    its summary and epilog from the module's docstring, the pcap argument."""
    import argparse
    from pathlib import Path
    ap = argparse.ArgumentParser(prog=f"tcplab {prog}", description=doc.split("\n\n")[0].strip("`"),
                                 epilog=doc.split("\n\n", 1)[1])
    ap.add_argument("pcap", type=Path)
    return ap


def read_capture(ap, a, reader):
    """``reader(a.pcap)``, or None after a one-line error (argparse's for a missing file)."""
    if not a.pcap.is_file():
        ap.error(f"{a.pcap}: no such file (give a pcap, e.g. a capture-client.pcap that a lab kept)")
    try:
        return reader(a.pcap)
    except Exception as exc:  # not a pcap, truncated...
        print(f"{ap.prog}: cannot read {a.pcap} as a pcap: {exc}", file=sys.stderr)
        return None


def exit_on_sigterm() -> None:
    """Make SIGTERM end the process like Ctrl-C: SystemExit(143) unwinds the stack, so every
    ``finally`` and ``with`` runs (a VM's work folder, a grader's basetemp, QEMU itself are
    cleaned up; by default SIGTERM kills Python on the spot and they stay behind)."""
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: tcplab COMMAND [--help] [ARGS...]   (or: python -m tcplab COMMAND ...)", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "exit codes: 0 ok, 1 a check failed, 2 usage error, 4 environment not usable"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return EXIT_OK if argv else EXIT_USAGE
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"tcplab: unknown command {cmd!r}\n{usage()}", file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(f"{__name__}.{COMMANDS[cmd][0]}")
    exit_on_sigterm()
    try:
        return module.main(rest)
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
