"""Wires the repo's pytest glue (fixtures/) into every test run from this checkout.

The repo directory goes first on sys.path so that ``fixtures`` is this repo's package, never the
unrelated PyPI package of the same name, and no bytecode is written when running as root (no
root-owned __pycache__ left in the repo)."""
import os
import sys

if os.geteuid() == 0:
    sys.dont_write_bytecode = True
_here = os.path.dirname(os.path.abspath(__file__))
if sys.path[0] != _here:
    sys.path.insert(0, _here)

pytest_plugins = ["fixtures.plugin"]
