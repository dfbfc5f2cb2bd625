"""An assignment folder and the checks a submission must pass before any test runs.

An assignment is a folder with an ``assignment.toml``::

    name = "Write the program: a TCP client"
    files = ["client.py"]          # a submission must have these (else it scores 0, with the reason)
    caps = []                      # capabilities student code keeps in the sandbox: [] or ["net_raw"]
    [limits]                       # per run of student code (tcplab.grading.sandbox.Limits)
    wall = 8
    memory_mb = 1024

and ``tests/`` (the graded tests, hidden ones included), ``starter/`` (what students get),
``reference/`` (the instructor's solution) and a ``README.md`` for students.
"""
from __future__ import annotations

try:
    import tomllib
except ImportError:          # Python < 3.11 (Gradescope's Ubuntu 22.04 image)
    import tomli as tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .sandbox import CAPABILITIES, Limits

MAX_FILE = 1024 * 1024      # a submitted file larger than this is refused (1 MiB)
KNOWN_KEYS = {"name", "files", "caps", "limits"}


@dataclass
class Assignment:
    path: Path
    name: str
    files: list[str]
    caps: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def load(cls, path: str | Path) -> "Assignment":
        path = Path(path).resolve()
        cfg = path / "assignment.toml"
        if not cfg.is_file():
            raise ConfigError(f"{path} is not an assignment folder: it has no assignment.toml "
                              "(see assignments/README.md for the layout)")
        try:
            data = tomllib.loads(cfg.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{cfg}: {exc}") from None
        unknown = set(data) - KNOWN_KEYS
        if unknown:
            raise ConfigError(f"{cfg}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(KNOWN_KEYS))}")
        files = data.get("files", [])
        if not isinstance(files, list) or not all(isinstance(f, str) and f and "/" not in f for f in files):
            raise ConfigError(f"{cfg}: files = {files!r}: give a list of file names, e.g. [\"client.py\"]")
        caps = tuple(data.get("caps", []))
        if any(c not in CAPABILITIES for c in caps):
            raise ConfigError(f"{cfg}: caps = {list(caps)!r}: only {', '.join(CAPABILITIES)} can be granted")
        try:
            limits = Limits(**data.get("limits", {}))
        except TypeError as exc:
            raise ConfigError(f"{cfg}: [limits]: {exc}; valid keys: wall, cpu, memory_mb, processes, "
                              "file_mb, open_files") from None
        except ConfigError as exc:
            raise ConfigError(f"{cfg}: [limits] {exc}") from None
        if not (path / "tests").is_dir():
            raise ConfigError(f"{path}: no tests/ folder with the graded tests")
        return cls(path, str(data.get("name", path.name)), files, caps, limits)

    @property
    def tests(self) -> Path:
        return self.path / "tests"

    @classmethod
    def find(cls, start: Path) -> "Assignment":
        """The assignment a test file belongs to (the nearest folder above with assignment.toml)."""
        for d in [start, *start.parents]:
            if (d / "assignment.toml").is_file():
                return cls.load(d)
        raise ConfigError(f"{start}: not inside an assignment folder (no assignment.toml above it)")

    def preflight(self, submission: Path) -> list[str]:
        """What makes a submission ungradable, one line each for the student: a missing folder or
        file, a file too large, a Python file that does not compile, a script (``.pkt``) that is
        not its template with ``>`` lines and results written in (a shell line, a Python block, a
        given line changed: :mod:`tcplab.grading.script_prediction`).  Empty: grade it.  Nothing
        of the submission is run here (``compile`` and the script reader only parse)."""
        submission = Path(submission)
        if not submission.is_dir():
            return [f"the submission {submission} is not a folder"]
        problems = []
        for name in self.files:
            f = submission / name
            if f.is_symlink() or not f.is_file():
                problems.append(f"{name} is missing from the submission (hand in a file named exactly {name})")
                continue
            if f.stat().st_size > MAX_FILE:
                problems.append(f"{name} is larger than {MAX_FILE // 1024} KiB")
                continue
            if name.endswith(".py"):
                try:
                    compile(f.read_bytes(), name, "exec", dont_inherit=True)
                except SyntaxError as exc:
                    problems.append(f"{name} has a syntax error at line {exc.lineno}: {exc.msg}")
                except ValueError as exc:       # null bytes in the source
                    problems.append(f"{name} cannot be read as Python: {exc}")
            elif name.endswith(".pkt"):
                from .script_prediction import Template, read_prediction
                try:
                    read_prediction(Template.load(self.path / "starter" / name), f.read_text(errors="replace"), name)
                except ConfigError as exc:
                    problems.append(str(exc))
        return problems
