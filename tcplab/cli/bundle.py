"""``tcplab bundle ASSIGNMENT_DIR [--out autograder.zip]``

Builds Gradescope's autograder zip for an assignment: setup.sh, run_autograder, tcplab's source
and the assignment's tests (never reference/ or starter/).  Upload it as the assignment's
autograder ("Zip file upload").  See assignments/README.md for which platforms can run it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import EXIT_OK, EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    doc = __doc__.split("\n\n")
    ap = argparse.ArgumentParser(prog="tcplab bundle", description=doc[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("assignment", type=Path)
    ap.add_argument("--out", type=Path, default=Path("autograder.zip"))
    a = ap.parse_args(argv)
    from ..errors import ConfigError
    from ..grading import Assignment
    from ..grading.bundle import build_bundle
    try:
        names = build_bundle(Assignment.load(a.assignment), a.out)
    except ConfigError as exc:
        print(f"tcplab bundle: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"written: {a.out} ({len(names)} files: setup.sh, run_autograder, tcplab/, assignment/)")
    return EXIT_OK
