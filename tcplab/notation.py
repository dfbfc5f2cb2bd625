"""The notation shared by traces and expectations: tcpdump's flag letters, option rendering,
sequence-number arithmetic."""
from __future__ import annotations

from typing import Iterable

#: tcpdump's flag letters, in tcpdump's print order (FIN+PSH+ACK is "FP.", SYN+ACK is "S.").
FLAG_LETTERS = (("FIN", "F"), ("SYN", "S"), ("RST", "R"), ("PSH", "P"), ("ACK", "."), ("URG", "U"),
                ("ECE", "E"), ("CWR", "W"))
FLAG_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20,
             "ECE": 0x40, "CWR": 0x80}
LETTER_TO_NAME = {letter: name for name, letter in FLAG_LETTERS}
MOD = 1 << 32


def flags_from_bits(bits: int) -> frozenset[str]:
    return frozenset(n for n, b in FLAG_BITS.items() if bits & b)


def flags_from_letters(text: str) -> frozenset[str]:
    """``"S."`` -> {SYN, ACK}.  Raises ValueError naming the valid letters."""
    bad = [c for c in text if c not in LETTER_TO_NAME]
    if bad or not text:
        raise ValueError(f"unknown TCP flag letter(s) {''.join(bad) or text!r}: use tcpdump's letters "
                         "S (SYN) F (FIN) R (RST) P (PSH) U (URG) E (ECE) W (CWR) and . (ACK), e.g. 'S.'")
    return frozenset(LETTER_TO_NAME[c] for c in text)


def letters(flags: Iterable[str]) -> str:
    fl = set(flags)
    return "".join(letter for name, letter in FLAG_LETTERS if name in fl) or "none"


def render_options(options: tuple) -> str:
    out = []
    for name, value in options:
        if name == "MSS":
            out.append(f"mss {value}")
        elif name == "SAckOK":
            out.append("sackOK")
        elif name == "Timestamp":
            out.append(f"TS val {value[0]} ecr {value[1]}")
        elif name == "NOP":
            out.append("nop")
        elif name == "WScale":
            out.append(f"wscale {value}")
        elif name == "SAck":
            out.append("sack " + " ".join(f"{value[i]}:{value[i + 1]}" for i in range(0, len(value) - 1, 2)))
        elif name == "EOL":
            out.append("eol")
        else:
            out.append(f"{name} {value!r}" if value not in (None, b"") else str(name))
    return ",".join(out)
