"""A student's answer file: one line, ``<recovery> <ssthresh>``; ``#`` starts a comment."""
from __future__ import annotations

from dataclasses import dataclass

from tcplab import ConfigError

RECOVERIES = ("fast_retransmit", "tail_loss_probe", "timeout")


@dataclass
class Answer:
    recovery: str
    ssthresh: int | None        # None: "none", nothing lowered it


def parse_answer(name: str, text: str) -> Answer:
    lines = [(n, line.split("#", 1)[0].split()) for n, line in enumerate(text.splitlines()[:1000], 1)]
    lines = [(n, words) for n, words in lines if words]
    if len(lines) != 1:
        raise ConfigError(f"{name}: write exactly one line, '<recovery> <ssthresh>' (e.g. 'timeout 7'); "
                          f"found {len(lines)} lines that are not comments")
    n, words = lines[0]
    if len(words) != 2:
        raise ConfigError(f"{name} line {n}: two words, '<recovery> <ssthresh>', not {' '.join(words)[:80]!r}")
    recovery, value = words[0].lower(), words[1].lower()
    if recovery not in RECOVERIES:
        raise ConfigError(f"{name} line {n}: {words[0][:40]!r} is not a recovery: write fast_retransmit, "
                          "tail_loss_probe or timeout")
    if value == "none":
        return Answer(recovery, None)
    if not value.isdigit() or len(value) > 6:
        raise ConfigError(f"{name} line {n}: the ssthresh is a number of segments (e.g. 7), or 'none' if "
                          f"nothing lowered it; not {words[1][:40]!r}")
    return Answer(recovery, int(value))
