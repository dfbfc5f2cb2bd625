"""What one lab leaves for people to read: its lost segments, the state transitions it made
happen, a picture of each captured connection, the files kept beside its pcaps, the block of the
HTML report, and a failed lab's artifacts.

Plain Python over a finished :class:`tcplab.Topology` (its captures, its wire); the pytest plugin
calls it from its hooks, and anything else (a grader, a notebook) can too.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import ExpectationFailed
from .html import connection_pictures, lab_html


class LabOutcome:
    """The report side of one lab run on ``topo``."""

    def __init__(self, topo):
        self.topo = topo
        self.workdir = Path(topo.workdir)
        self._pictures: dict[str, list] = {}      # per phase: that phase's own failure

    # -- what the captures saw ---------------------------------------------------------------
    def traces(self) -> list:
        """The traces of the captures that ran and saw something."""
        return [cap.trace for cap in self.topo.captures if cap.saw_traffic]

    def lost_segments(self) -> str:
        """The lost segments of every captured connection, relative notation, one per line, each
        connection headed by its endpoints."""
        out = []
        for cap in self.topo.captures:
            if not cap.saw_traffic:
                continue
            try:
                conns = cap.trace.connections()
            except Exception as exc:  # a broken capture must not hide the test's own result
                out.append(f"({cap.name}: no trace: {exc})")
                continue
            for conn in conns:
                lost = conn.lost()
                if lost:
                    out.append(f"{conn.client[0]}:{conn.client[1]} > {conn.server[0]}:{conn.server[1]}:")
                    out += [conn.line(s) for s in lost]
        return "\n".join(out) or "(none)"

    def transitions(self) -> set[str]:
        """The state transitions this lab made happen (``A>B``, textbook names), from the kernel's
        record of each captured connection and from its sock_diag pollers; for the state diagram."""
        paths = [path for cap in self.topo.captures if not cap.running for path in cap.state_paths()]
        paths += [path for poller in self.topo.pollers for path in poller.seen.values()]
        return {f"{a}>{b}" for path in paths for a, b in zip(path, path[1:])}

    def wire(self) -> str | None:
        """The wire's impairments, with the seed that replays them (None: an unimpaired wire)."""
        return self.topo.impairments.describe() if self.topo.impairments is not None else None

    def seed(self) -> int | None:
        """The seed of the wire's random impairments, where it has any."""
        imp = self.topo.impairments
        return imp.seed if imp is not None and imp.random else None

    # -- pictures and files --------------------------------------------------------------------
    def pictures(self, phase: str, error: BaseException | None = None) -> list[tuple[str, str, str]]:
        """(kind, caption, SVG) for each captured connection, drawn once per phase; where ``error``
        is an :class:`ExpectationFailed`, its connection is marked where it departs."""
        if phase not in self._pictures:
            mismatch = error.mismatch if isinstance(error, ExpectationFailed) else None
            self._pictures[phase] = [pic for trace in self.traces()
                                     for pic in connection_pictures(trace, mismatch=mismatch)]
        return self._pictures[phase]

    def write_pictures(self, phase: str, error: BaseException | None = None) -> list[Path]:
        """The picture of each captured connection, next to the pcaps (ladder-1.svg, tsg-2.svg ...)."""
        out = []
        try:
            for n, (kind, _, svg) in enumerate(self.pictures(phase, error), 1):
                path = self.workdir / f"{kind}-{n}.svg"
                path.write_text(svg)
                out.append(path)
        except Exception:  # a picture must never hide the test's own result
            pass
        return out

    def pcaps(self) -> list[Path]:
        return sorted(self.workdir.glob("*.pcap"))

    def kept_files(self) -> list[Path]:
        return kept_files(self.workdir)

    def failure_sections(self, pictures: list[Path]) -> list[tuple[str, str]]:
        """(title, body) sections of a failed lab: its pcaps, its pictures and its wire."""
        out = []
        pcaps = self.pcaps()
        if pcaps:
            out.append(("tcplab captures", "\n".join(str(p) for p in pcaps)))
        for kind in ("ladder", "tsg"):
            mine = [p for p in pictures if p.name.startswith(kind + "-")]
            if mine:
                out.append((f"tcplab {kind}", "\n".join(str(p) for p in mine)))
        if self.wire() is not None:
            out.append(("tcplab wire", self.wire()))
        return out

    def html(self, phase: str, error: BaseException | None, *, claims: str, points: str, outcome: str,
             report_dir: Path) -> str:
        """The lab's block in the HTML report: claims, points, wire, the expected exchange, the
        pictures and links to the pcaps (relative to the report's folder)."""
        script = error.mismatch.script if isinstance(error, ExpectationFailed) and error.mismatch else None
        pictures = [(caption, svg) for _, caption, svg in self.pictures(phase, error)]
        pcaps = [(p.name, os.path.relpath(p, report_dir)) for p in self.pcaps()]
        return lab_html(claims=claims, points=points, wire=self.wire(), script=script, pictures=pictures,
                        pcaps=pcaps, outcome=outcome)


def kept_files(workdir: Path) -> list[Path]:
    """What a lab leaves in its folder for people to look at: its pcaps, the kernel's sender
    records and the pictures (ladder and tsg SVGs) beside them."""
    w = Path(workdir)
    return sorted([*w.glob("*.pcap"), *w.glob("*-sender.json"), *w.glob("ladder-*.svg"), *w.glob("tsg-*.svg")])


def keep_artifacts(folder: Path, heading: str, text: str, sections: list[tuple[str, str]],
                   files: list[Path]) -> str | None:
    """A failed test's failure text (``heading``, ``text``, tcplab's ``sections``) and ``files``
    in ``folder``; a phase that fails after another (teardown after call) adds its text.  Returns
    why it could not (None: kept)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "failure.txt", "a") as f:
            f.write(f"{heading}\n\n{text}\n")
            for title, body in sections:
                if title.startswith("tcplab"):
                    f.write(f"\n--- {title} ---\n{body}\n")
        for path in files:
            shutil.copy2(path, folder / path.name)
    except OSError as exc:
        return f"could not keep the artifacts in {folder}: {exc}"
    return None
