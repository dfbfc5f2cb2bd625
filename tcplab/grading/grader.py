"""Grading submissions: one pytest run per submission, several at once, each leaving a
``results.json`` (Gradescope's format) and one line of ``grades.csv``.

A submission that cannot be graded (a file missing, a syntax error) still gets its run: every
test fails with that reason, so its results.json lists every test at 0 with feedback.  A machine
that cannot run a test (a tool missing, namespaces refused) gives no grade at all: status
"cannot grade here", with the reason, never a score.  A run
that crashes or exceeds its time keeps the tests that finished (results.json is rewritten after
every test); a run that left nothing gets a results.json of our own with the reason.  Nothing a
submission does stops the batch.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..errors import ConfigError
from ..lab.process import stop_group
from .assignment import Assignment
from .results import CANNOT_GRADE, cannot_grade_here, is_cannot_grade

CSV_FIELDS = ["student", "score", "max_score", "status", "results", "note"]


@dataclass
class Graded:
    student: str
    score: float
    max_score: float
    status: str          # graded | ungradable | timeout | error | cannot grade here
    results: Path
    note: str = ""

    def row(self, base: Path) -> dict:
        no_grade = self.status == CANNOT_GRADE    # an empty cell, never a 0 a spreadsheet would average
        return {"student": self.student, "score": "" if no_grade else f"{self.score:g}",
                "max_score": "" if no_grade else f"{self.max_score:g}",
                "status": self.status, "results": os.path.relpath(self.results, base), "note": self.note}


def find_submissions(assignment: Assignment, paths: Iterable[Path]) -> list[Path]:
    """Each path is a submission (it holds one of the assignment's files) or a folder of them
    (one subfolder per student)."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.is_dir():
            raise ConfigError(f"{p}: no such folder (give a student's folder, or a folder of them)")
        if any((p / f).exists() for f in assignment.files):
            out.append(p)
        else:
            subs = sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
            if not subs:
                raise ConfigError(f"{p}: neither a submission (none of {', '.join(assignment.files)}) nor a "
                                  "folder of submissions (no subfolders)")
            out += subs
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"two submissions are named {', '.join(dup)}: each student's folder needs its own name")
    return out


def grade_one(assignment: Assignment, submission: Path, out: Path, *, timeout: float = 300.0,
              extra_args: Iterable[str] = ()) -> Graded:
    """Grade one submission into ``out/`` (results.json, the tests' pcaps and ladders, log.txt)."""
    student = submission.name
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    if results.exists():
        results.unlink()
    problems = assignment.preflight(submission)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out))   # pytest's basetemp, removed below
    argv = [sys.executable, "-m", "pytest", str(assignment.tests), "--submission", str(submission.resolve()),
            "--grade-json", str(results), "-p", "no:cacheprovider", "-q",
            "--basetemp", str(tmp / "t"), "--rootdir", str(assignment.path), *extra_args]
    status, note = ("ungradable", "; ".join(problems)) if problems else ("graded", "")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    try:
        with open(out / "log.txt", "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=assignment.path, env=env, start_new_session=True)
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                stop_group(proc, grace=10, kill_wait=None)   # the plugin turns SIGTERM into a clean stop
                code = None
                status, note = "timeout", f"grading stopped after {timeout:g} s; unfinished tests score 0"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    no_grade = is_cannot_grade(json.loads(results.read_text())) if results.exists() else ""
    if no_grade:
        status, note = CANNOT_GRADE, no_grade
    elif code not in (0, 1, None) and status == "graded":
        status, note = "error", f"pytest exited with status {code}: see {out / 'log.txt'}"
    if not results.exists():
        tail = (out / "log.txt").read_text(errors="replace")[-800:]
        cannot_grade_here(results, f"the grader could not run the tests (pytest status {code}):\n{tail}")
        status = "error" if status == "graded" else status
    data = json.loads(results.read_text())
    if note and status == "timeout":
        data["output"] = note
        results.write_text(json.dumps(data, indent=2))
    max_score = sum(t.get("max_score", 0) for t in data.get("tests", []))
    return Graded(student, float(data.get("score", 0)), float(max_score), status, results, note)


def grade_many(assignment: Assignment, submissions: list[Path], out: Path, *, jobs: int | None = None,
               timeout: float = 300.0, progress: Callable[[Graded], None] | None = None,
               extra_args: Iterable[str] = ()) -> list[Graded]:
    """Grade every submission, ``jobs`` at a time; write ``out/grades.csv``; return the grades in
    the submissions' order."""
    jobs = jobs or os.cpu_count() or 1
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, Graded] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(grade_one, assignment, s, out / s.name, timeout=timeout, extra_args=extra_args): s
                   for s in submissions}
        for f in as_completed(futures):
            s = futures[f]
            try:
                g = f.result()
            except Exception as exc:  # one submission's trouble never stops the batch
                res = out / s.name / "results.json"
                cannot_grade_here(res, f"the grader failed on this submission: {exc!r}")
                g = Graded(s.name, 0.0, 0.0, "error", res, repr(exc))
            done[s.name] = g
            if progress:
                progress(g)
    grades = [done[s.name] for s in submissions]
    with open(out / "grades.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for g in grades:
            w.writerow(g.row(out))
    return grades
