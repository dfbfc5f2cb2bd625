"""Check your four answers before you hand them in:  python selftest.py

It reads each file as the grader does (tcplab's own parser: your course's copy, installed with
pip, or its checkout's .venv/bin/python) and prints what it understood, or what to fix.  It says
nothing of whether an answer is right: the kernels say that when you are graded.
"""
import sys
from pathlib import Path

from tcplab import ConfigError
from tcplab.grading.predict import parse_answer

FILES = ("middle_loss.txt", "cubic_middle_loss.txt", "tail_loss.txt", "whole_flight_lost.txt")
bad = 0
for name in FILES:
    path = Path(__file__).with_name(name)
    try:
        answer = parse_answer(name, path.read_text())
    except (OSError, ConfigError) as exc:
        bad += 1
        print(f"{name}: {exc.strerror}" if isinstance(exc, OSError) else str(exc))
        continue
    left = "no ssthresh (nothing lowered it)" if answer.ssthresh is None else f"ssthresh {answer.ssthresh}"
    print(f"{name}: {answer.recovery}, {left}")
sys.exit(1 if bad else 0)
