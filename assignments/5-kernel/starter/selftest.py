"""Check your three scripts before you hand them in:  python selftest.py

Each file is read as the grader reads it (tcplab's own reader: your course's copy, installed with
pip, or its checkout's .venv/bin/python): a line it cannot read, or a '?' still unanswered, is
named.  Then, where a lab can be built here (Linux, as root or rootless), each script runs
against this machine's kernel with tcplab's scripted peer, as packetdrill would run it, and the
first line where the kernel did something else is printed.  It gives no score.
"""
import subprocess
import sys
from pathlib import Path

from tcplab import ConfigError
from tcplab.grading.script_prediction import read_script

FILES = ("passive_open.pkt", "lost_segments.pkt", "reset_attempts.pkt")
ready, bad = [], 0
for name in FILES:
    path = Path(__file__).with_name(name)
    try:
        _, unanswered = read_script(path.read_text(errors="replace"), name, commands=None)
    except (OSError, ConfigError) as exc:
        bad += 1
        print(f"{name}: {exc.strerror if isinstance(exc, OSError) else exc}")
        continue
    if unanswered:
        bad += 1
        print(f"{name}: readable; '= ?' still to answer on line(s) {', '.join(map(str, sorted(unanswered)))}")
        continue
    print(f"{name}: readable, every '?' answered")
    ready.append(path)
if ready:
    print("\nrunning them against this machine's kernel (tcplab pkt):", flush=True)
    r = subprocess.run([sys.executable, "-m", "tcplab", "pkt", "--ip_version=ipv4", "--tolerance_usecs=50000", "-n", "3",
                        *map(str, ready)])
    bad += r.returncode != 0
sys.exit(1 if bad else 0)
