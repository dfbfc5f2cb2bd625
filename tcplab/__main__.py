"""Command line: ``python -m tcplab doctor`` | ``python -m tcplab coverage`` | ``python -m tcplab vm ...``."""
from __future__ import annotations

import sys

USAGE = """usage: python -m tcplab COMMAND
  doctor      what this machine can do for the labs (exit 0 when the labs can run)
  coverage    run the labs and write the claim -> lab -> result table (docs/coverage.md)
  vm          run pytest inside a VM booted from another kernel (see: python -m tcplab vm --help)
  soak        run a selection N times in a row; failures per test, wall times (soak --help)"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "doctor":
        from .doctor import main as doctor
        return doctor()
    if cmd == "coverage":
        from .coverage import main as coverage
        return coverage(rest)
    if cmd == "vm":
        from .vm import main as vm
        return vm(rest)
    if cmd == "soak":
        from .soak import main as soak
        return soak(rest)
    print(f"unknown command {cmd!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
