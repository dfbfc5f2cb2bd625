"""Check your three predictions before you hand them in:  python selftest.py

It reads each file as the grader does (tcplab's own parser: your course's copy, installed with
pip, or its checkout's .venv/bin/python) and prints each segment as it was understood, or the line
that cannot be read and why.  It says nothing of whether a prediction is right: the kernels say
that when you are graded.
"""
import sys
from pathlib import Path

from tcplab import ConfigError
from tcplab.grading.predict import parse_prediction

FILES = ("data_and_close.txt", "first_syn_lost.txt", "final_ack_lost.txt")
bad = 0
for name in FILES:
    path = Path(__file__).with_name(name)
    try:
        specs = parse_prediction(path.read_text())
    except (OSError, ConfigError) as exc:
        bad += 1
        print(f"{name}: {exc.strerror if isinstance(exc, OSError) else exc}")
        continue
    print(f"{name}: {len(specs)} segments, each readable")
sys.exit(1 if bad else 0)
