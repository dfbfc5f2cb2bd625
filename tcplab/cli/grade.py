"""``tcplab grade ASSIGNMENT_DIR SUBMISSION [SUBMISSION ...] [--out DIR] [-j N]``

Grades one submission, or a whole class (a folder with one subfolder per student), in parallel
on the machine's cores, with a progress bar.  Writes ``DIR/<student>/results.json`` (Gradescope's
format, with each test's feedback, pcaps and ladder SVGs beside it) and ``DIR/grades.csv``.
A broken submission scores 0 with the reason; it never stops the batch.  Exit status 0 once every
submission has its results.json; 1 if the grader itself failed on one (its log.txt says why); 4 if
this machine could not run a test (a tool missing, namespaces refused, no VM): those submissions
get no grade, and their results.json says "cannot grade here" with the reason, hidden from the
student.  It runs as
root, else rootless in a user namespace, else (a container that forbids namespaces) inside a VM
booted by QEMU; student code itself runs only in the sandbox, with no privilege.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import time
from pathlib import Path

from . import EXIT_ENV, EXIT_FAILED, EXIT_OK, EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    doc = __doc__.split("\n\n")
    ap = argparse.ArgumentParser(prog="tcplab grade", description=doc[1], epilog="\n\n".join(doc[2:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("assignment", type=Path, help="the assignment folder (with assignment.toml and tests/)")
    ap.add_argument("submissions", type=Path, nargs="+", help="a student's folder, or a folder of them")
    ap.add_argument("--out", type=Path, default=Path("grades"), help="where results go (default ./grades)")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                    help="submissions graded at once (default: the number of cores)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per submission (default 300)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar (a line per submission)")
    ap.add_argument("--results-json", type=Path, metavar="PATH",
                    help="one submission only: also write its results.json here (Gradescope's "
                         "/autograder/results/results.json); where the labs cannot run, this file says why")
    ap.add_argument("--classroom", action="store_true",
                    help="one submission only: hand the score to GitHub Classroom (the reporter's 'result' "
                         "in $GITHUB_OUTPUT, a score table in $GITHUB_STEP_SUMMARY)")
    a = ap.parse_args(argv)
    from ..errors import ConfigError
    from ..grading import Assignment
    from ..grading.grader import find_submissions, grade_many
    if a.jobs < 1:
        ap.error(f"-j {a.jobs}: give 1 or more")
    try:
        assignment = Assignment.load(a.assignment)
        subs = find_submissions(assignment, a.submissions)
    except ConfigError as exc:
        print(f"tcplab grade: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        a.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"tcplab grade: cannot write the results folder --out {a.out}: {exc.strerror}; give a folder "
              "you can write", file=sys.stderr)
        return EXIT_USAGE
    if (a.results_json or a.classroom) and len(subs) != 1:
        ap.error(f"--results-json and --classroom grade one submission; {len(subs)} were given")
    # Before any thread (the pool, the progress bar): as root, else in a user namespace, else in
    # the VM (a course platform's container forbids namespaces), else one line saying why.
    from ..lab import where
    access = where.arrange()
    if not access.ok:
        missing = vm_missing()
        if missing is None:
            print(f"tcplab grade: no lab network can be built here ({access.why}); grading in a VM", file=sys.stderr)
            return grade_in_vm(a, subs)
        why = f"cannot create network namespaces here ({access.why}), and no VM can run: {missing}"
        print(f"tcplab grade: {why}", file=sys.stderr)
        if a.results_json:   # the platform shows this line instead of a crash
            from ..grading.results import cannot_grade_here
            cannot_grade_here(a.results_json, f"tcplab: {why}. Run the autograder's setup.sh (it installs "
                              "QEMU and a kernel), or grade on GitHub Classroom or a Linux machine "
                              "(assignments/README.md)")
        return EXIT_ENV
    if access.mode != where.ROOT:
        print(f"tcplab grade: mode {access.mode} ({where.LIMITS[access.mode]})", file=sys.stderr)
    print(f"grading {len(subs)} submission(s) of {assignment.name!r}, {a.jobs} at a time -> {a.out}/",
          file=sys.stderr)
    t0 = time.monotonic()
    bar = None
    if not a.no_progress and sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(total=len(subs), unit="submission", file=sys.stderr)

    from ..grading.results import CANNOT_GRADE

    def progress(g):
        if g.status == CANNOT_GRADE:
            line = f"{g.student}: no grade ({CANNOT_GRADE}: {g.note})"
        else:
            line = f"{g.student}: {g.score:g}/{g.max_score:g} ({g.status}{': ' + g.note if g.note else ''})"
        if bar is not None:
            bar.set_postfix_str(g.student[:20])
            bar.write(line, file=sys.stderr)
            bar.update(1)
        else:
            print(line, file=sys.stderr)
    grades = grade_many(assignment, subs, a.out, jobs=a.jobs, timeout=a.timeout, progress=progress)
    if bar is not None:
        bar.close()
    took = time.monotonic() - t0
    print(f"{len(grades)} graded in {took:.1f} s ({len(grades) / took * 60:.1f} submissions/min); "
          f"grades: {a.out / 'grades.csv'}", file=sys.stderr)
    if a.results_json:
        a.results_json.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(grades[0].results, a.results_json)
    if a.classroom:
        to_classroom(grades[0].results)
    errors = [g.student for g in grades if g.status == "error"]
    if errors:   # the grader itself failed on these (their log.txt says why); scores are still written
        print(f"the grader failed on: {', '.join(errors)}", file=sys.stderr)
    no_grade = [g for g in grades if g.status == CANNOT_GRADE]
    if no_grade:   # the machine's doing, never a score: the instructor fixes the machine and grades again
        print(f"tcplab grade: {CANNOT_GRADE} ({len(no_grade)} of {len(grades)} submissions got no grade): "
              f"{no_grade[0].note}", file=sys.stderr)
        return EXIT_ENV
    return EXIT_FAILED if errors else EXIT_OK


def vm_missing() -> str | None:
    """What the VM needs and this machine lacks, or None."""
    from ..lab.vm import VMError, default_kernel
    from .. import tools
    if tools.find("qemu-system-x86_64") is None:
        return "QEMU is not installed (the bundle's setup.sh, or  sudo ci/setup --vm, installs it)"
    try:
        default_kernel()
    except VMError as exc:
        return str(exc)
    return None


def grade_in_vm(a: argparse.Namespace, subs: list[Path]) -> int:
    """The same grading inside the VM: the guest writes into the VM's results share, and the
    grades, results.json files, pcaps and ladders are copied to --out from there."""
    from ..lab.vm import Guest, VMError, default_kernel, guest_python, run_vm

    def collect(results: Path) -> None:
        if (results / "out").is_dir():
            shutil.copytree(results / "out", a.out, dirs_exist_ok=True)
    argv = [guest_python(), "-m", "tcplab", "grade", str(a.assignment.resolve()), *(str(s.resolve()) for s in subs),
            "--out", "{results}/out", "-j", str(a.jobs), "--timeout", str(a.timeout), "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k.startswith("TCPLAB_")}
    try:
        rc = run_vm(default_kernel(), Guest(argv, Path.cwd(), env, collect),
                    timeout=a.timeout * len(subs) / max(1, min(a.jobs, len(subs))) + 600, boot_timeout=300)
    except VMError as exc:
        rc = EXIT_ENV
        why = f"the VM could not grade: {exc}"
        print(f"tcplab grade: {why}", file=sys.stderr)
        if a.results_json:
            from ..grading.results import cannot_grade_here
            cannot_grade_here(a.results_json, f"tcplab: {why}")
        return rc
    first = a.out / subs[0].name / "results.json"
    if a.results_json and first.exists():
        a.results_json.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(first, a.results_json)
    if a.classroom and first.exists():
        to_classroom(first)
    return rc


def to_classroom(results: Path) -> None:
    """GitHub Classroom's reporter reads ``result`` (base64 JSON) from this step's outputs."""
    from ..grading.results import classroom_payload
    data = json.loads(results.read_text())
    payload = classroom_payload(data)
    encoded = base64.b64encode(json.dumps(payload).encode()).decode()
    out = os.environ.get("GITHUB_OUTPUT")
    if out:
        with open(out, "a") as f:
            f.write(f"result={encoded}\n")
    else:
        print(f"result={encoded}")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as f:
            f.write(f"### tcplab: {data.get('score', 0):g} of {payload['max_score']:g} points\n\n"
                    "| test | points | max |\n|---|---|---|\n")
            for t in data.get("tests", []):
                f.write(f"| {t['name'].split('::')[-1]} | {t['score']:g} | {t['max_score']:g} |\n")
