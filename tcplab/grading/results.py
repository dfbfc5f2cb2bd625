"""Scores of a graded run, in the formats course platforms read (plain Python, no pytest).

A :class:`Gradebook` collects one :class:`TestResult` per test (points, score, status, the feedback
a student reads) and writes Gradescope's autograder ``results.json``::

    {"score": 7.0, "execution_time": 12, "output": "...",
     "tests": [{"name": ..., "score": ..., "max_score": ..., "status": "passed"|"failed",
                "output": ..., "visibility": "visible"|"hidden"|"after_due_date"|...}]}

It is rewritten atomically after every test, so a run that crashes part-way still leaves a valid
file: the tests that ran keep their scores; the others score 0 with the reason.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")


@dataclass
class TestResult:
    name: str
    max_score: float
    score: float = 0.0
    status: str = "failed"          # passed | failed (Gradescope's two)
    output: str = ""
    visibility: str = "visible"
    extra_data: dict = field(default_factory=dict)   # ladders and pcaps, relative to results.json
    ran: bool = False
    #: why the test could not run on this machine (a tool missing, namespaces refused, the
    #: kernel's record unreadable): then it has no score at all, and the run cannot be graded
    not_run: str = ""

    def reason(self) -> str:
        """One line for the score table."""
        first = next((ln.strip() for ln in self.output.splitlines() if ln.strip()), "")
        return first[:100]


@dataclass
class Gradebook:
    path: Path | None = None
    started: float = field(default_factory=time.monotonic)
    tests: dict[str, TestResult] = field(default_factory=dict)
    output: str = ""

    def expect(self, name: str, max_score: float, visibility: str = "visible") -> None:
        """A test that will run (collected): until it reports, it scores 0 "did not run"."""
        self.tests.setdefault(name, TestResult(name, max_score, visibility=visibility,
                                               output="did not run: the grading run stopped before this test"))

    def record(self, result: TestResult) -> None:
        result.ran = True
        self.tests[result.name] = result
        self.write()

    @property
    def score(self) -> float:
        return round(sum(t.score for t in self.tests.values()), 4)

    @property
    def cannot_grade(self) -> str:
        """Why this run is no grade (tests that could not run on this machine), or ""."""
        not_run = [t for t in self.tests.values() if t.not_run]
        if not not_run:
            return ""
        reasons = list(dict.fromkeys(t.not_run for t in not_run))
        return (f"{len(not_run)} of {len(self.tests)} tests could not run on this machine: "
                + "; ".join(reasons))

    @property
    def max_score(self) -> float:
        return round(sum(t.max_score for t in self.tests.values()), 4)

    def as_gradescope(self) -> dict:
        why = self.cannot_grade
        if why:
            return cannot_grade_payload(why, int(time.monotonic() - self.started))
        return {
            "score": self.score,
            "execution_time": int(time.monotonic() - self.started),
            "output": self.output or f"{self.score:g} of {self.max_score:g} points",
            "tests": [{"name": t.name, "score": t.score, "max_score": t.max_score, "status": t.status,
                       "output": t.output, "visibility": t.visibility,
                       **({"extra_data": t.extra_data} if t.extra_data else {})} for t in self.tests.values()],
        }

    def write(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".results-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(self.as_gradescope(), f, indent=2)
        os.replace(tmp, self.path)

    def table(self) -> str:
        """The terminal's score table: test, points, max, one-line reason."""
        width = max([len(t.name) for t in self.tests.values()] + [4])
        rows = [f"{'test':<{width}}  {'points':>6}  {'max':>5}  reason"]
        for t in self.tests.values():
            if t.not_run:
                rows.append(f"{t.name:<{width}}  {'-':>6}  {t.max_score:>5g}  not run here: {t.not_run[:100]}")
                continue
            why = "" if t.score == t.max_score and t.status == "passed" else t.reason()
            rows.append(f"{t.name:<{width}}  {t.score:>6g}  {t.max_score:>5g}  {why}")
        if self.cannot_grade:
            rows.append(f"{'total':<{width}}  {'-':>6}  {self.max_score:>5g}  {CANNOT_GRADE}: not a score")
        else:
            rows.append(f"{'total':<{width}}  {self.score:>6g}  {self.max_score:>5g}")
        return "\n".join(rows)


def classroom_payload(results: dict) -> dict:
    """A Gradescope ``results.json`` as GitHub Classroom's autograding reporter reads a runner's
    result (``classroom-resources/autograding-grading-reporter``: base64 JSON in ``<ID>_RESULTS``)."""
    tests = results.get("tests", [])
    max_score = sum(t.get("max_score", 0) for t in tests)
    passed = all(t.get("status") == "passed" for t in tests) and bool(tests)
    return {"version": 1, "status": "pass" if passed else ("fail" if tests else "error"),
            "max_score": max_score,
            "tests": [{"name": t["name"].split("::")[-1], "status": "pass" if t.get("status") == "passed" else "fail",
                       "score": t.get("score", 0), "message": t.get("output", ""), "test_code": t["name"],
                       "filename": t["name"].split("::")[0], "line_no": 0, "execution_time": ""}
                      for t in tests] or [{"name": "grading", "status": "error", "score": 0,
                                           "message": results.get("output", ""), "test_code": "", "filename": "",
                                           "line_no": 0, "execution_time": ""}]}


#: the first words of results.json's output, and the grade's status, when a run is no grade
CANNOT_GRADE = "cannot grade here"


def cannot_grade_payload(why: str, execution_time: int = 0) -> dict:
    """Gradescope's results.json for a run that is no grade: hidden from the student (the
    whole result's ``visibility``), score 0 only because the format needs one, and the reason
    with its fix for the instructor; ``extra_data.tcplab`` marks it for tools."""
    return {"score": 0, "execution_time": execution_time, "visibility": "hidden", "stdout_visibility": "hidden",
            "output": f"{CANNOT_GRADE}: {why}. This is not the student's score: nothing was graded. Fix the "
                      "machine and grade again.",
            "extra_data": {"tcplab": CANNOT_GRADE, "why": why}, "tests": []}


def is_cannot_grade(results: dict) -> str:
    """The reason a results.json is no grade, or ""."""
    extra = results.get("extra_data") or {}
    return extra.get("why", "") if extra.get("tcplab") == CANNOT_GRADE else ""


def cannot_grade_here(path: Path, why: str) -> None:
    """Write :func:`cannot_grade_payload` to ``path``: the platform shows the reason instead of
    a crash or a score."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cannot_grade_payload(why), indent=2))
