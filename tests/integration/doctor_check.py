"""Does ``tcplab doctor`` tell the truth about what ``pytest labs/`` then does?"""
from __future__ import annotations

import difflib


def doctor_explains_the_run(doctor: str, doctor_rc: int, labs: str, labs_rc: int) -> None:
    """Doctor's verdict is the run's (it says the labs can run exactly when they do), every
    reason a lab skipped for (but "slow lab") is one doctor gave, and doctor calls nothing
    missing that the passing labs used."""
    can_run = "labs can run" in doctor
    assert can_run == (doctor_rc == 0), doctor
    assert can_run == (labs_rc == 0), (doctor, labs[-3000:])
    absent = [line for line in doctor.splitlines() if line.startswith(("  absent", "  MISSING"))]
    for skip in (line for line in labs.splitlines() if line.startswith("SKIPPED") and "slow lab" not in line):
        reason = skip.split(": ", 1)[1]
        best = max((difflib.SequenceMatcher(None, reason, a).find_longest_match(0, len(reason), 0, len(a)).size
                    for a in absent), default=0)
        assert best >= 60, f"a lab skipped for a reason tcplab doctor did not give:\n{skip}\ndoctor:\n{doctor}"
    assert not [a for a in absent if "MISSING" in a], doctor
