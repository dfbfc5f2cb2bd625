"""The state diagram and table from JUnit XML (no kernel): which arrows are coloured, which lab
names them, the impossible transitions and their reasons, a valid SVG."""
import xml.etree.ElementTree as ET

import pytest

from tcplab.observe.states import StateChange, gaps, textbook_path
from tcplab.report.statediagram import TRANSITIONS, diagram_svg, observed, table_md

SVG = "{http://www.w3.org/2000/svg}"


def junit(tmp_path, name, cases):
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite")
    for lab, props, outcome in cases:
        case = ET.SubElement(suite, "testcase", classname="labs.test_states", name=lab)
        p = ET.SubElement(case, "properties")
        for k, v in props.items():
            ET.SubElement(p, "property", name=k, value=v)
        if outcome == "fail":
            ET.SubElement(case, "failure", message="x")
        elif outcome == "skip":
            ET.SubElement(case, "skipped")
    path = tmp_path / name
    ET.ElementTree(root).write(path)
    return path


def arrows(svg):
    root = ET.fromstring(svg)
    return {line.get("data-transition"): line.get("class").split()[-1] for line in root.iter(f"{SVG}line")
            if line.get("data-transition")}


def test_arrows_are_coloured_by_where_a_passing_lab_showed_them(tmp_path):
    here = observed(junit(tmp_path, "here.xml", [
        ("test_open", {"transitions": "CLOSED>SYN_SENT SYN_SENT>ESTABLISHED"}, "pass"),
        ("test_broken", {"transitions": "ESTABLISHED>CLOSE_WAIT"}, "fail"),
        ("test_skipped", {"transitions": "CLOSE_WAIT>LAST_ACK"}, "skip"),
        ("test_rst", {"shows": "ESTABLISHED>CLOSED on RST"}, "pass"),
    ]))
    vm = observed(junit(tmp_path, "vm.xml", [("test_tw", {"shows": "TIME_WAIT>CLOSED"}, "pass")]))
    svg = diagram_svg(here, vm, kernel="6.18", vm_label="Debian 6.1")
    a = arrows(svg)
    assert a["CLOSED>SYN_SENT"] == "tr-here" and a["SYN_SENT>ESTABLISHED"] == "tr-here"
    assert a["ESTABLISHED>CLOSE_WAIT"] == "tr-none"       # its lab failed
    assert a["CLOSE_WAIT>LAST_ACK"] == "tr-none"          # its lab skipped
    assert a["TIME_WAIT>CLOSED"] == "tr-vm"
    assert a["ESTABLISHED>CLOSED on RST"] == "tr-here"
    assert a["LISTEN>SYN_SENT"] == "tr-impossible"
    assert set(a) == {t.key for t in TRANSITIONS}        # every transition is drawn
    assert "test_open" in svg and "impossible on Linux" in svg


def test_table_lists_every_transition_with_labs_results_and_reasons(tmp_path):
    here = observed(junit(tmp_path, "here.xml", [
        ("test_open[ipv4]", {"transitions": "CLOSED>SYN_SENT"}, "pass"),
        ("test_open[ipv6]", {"transitions": "CLOSED>SYN_SENT"}, "fail"),
    ]))
    md = table_md(here, None)
    rows = [r for r in md.splitlines()[2:]]
    assert len(rows) == len(TRANSITIONS)
    assert "| CLOSED -> SYN_SENT | active OPEN: connect(), snd SYN | test_open | 1 pass, **1 FAIL** |" in md
    assert "| LISTEN -> SYN_SENT | SEND, snd SYN | impossible: the sockets API has no SEND" in md
    assert "| CLOSING -> CLOSED | rcv RST | **none** | - |" in md


def test_the_most_specific_lab_names_an_arrow(tmp_path):
    here = observed(junit(tmp_path, "h.xml", [
        ("test_everything", {"transitions": "CLOSED>SYN_SENT SYN_SENT>ESTABLISHED ESTABLISHED>FIN_WAIT_1"}, "pass"),
        ("test_just_this", {"transitions": "CLOSED>SYN_SENT"}, "pass"),
    ]))
    svg = diagram_svg(here)
    assert "test_just_this" in svg


def test_a_lab_that_declares_an_arrow_names_it_before_a_chance_outcome(tmp_path):
    """Two programs that happened to close at once showed FIN_WAIT_1 -> CLOSING with few other
    transitions, in one run of two; the lab built for it declares it, and shows it in every run."""
    here = observed(junit(tmp_path, "h.xml", [
        ("test_programs[ipv4]", {"transitions": "FIN_WAIT_1>CLOSING CLOSING>TIME_WAIT"}, "pass"),
        ("test_programs[ipv6]", {"transitions": "FIN_WAIT_1>FIN_WAIT_2 FIN_WAIT_2>TIME_WAIT"}, "pass"),
        ("test_simultaneous_close[ipv4]", {"transitions": "ESTABLISHED>FIN_WAIT_1 FIN_WAIT_1>CLOSING "
                                           "CLOSING>TIME_WAIT", "shows": "FIN_WAIT_1>CLOSING"}, "pass"),
        ("test_simultaneous_close[ipv6]", {"transitions": "ESTABLISHED>FIN_WAIT_1 FIN_WAIT_1>CLOSING "
                                           "CLOSING>TIME_WAIT"}, "pass"),
    ]))
    from tcplab.report.statediagram import _labs
    by_key = {t.key: t for t in TRANSITIONS}
    assert _labs(by_key["FIN_WAIT_1>CLOSING"], here) == ["test_simultaneous_close", "test_programs"]  # declared
    assert _labs(by_key["CLOSING>TIME_WAIT"], here) == ["test_simultaneous_close", "test_programs"]   # 2 of 2 runs, 1 of 2


def test_a_share_of_runs_not_their_number_ranks_labs(tmp_path):
    """A lab run for many parameters shows the handshake in each run; a lab with fewer
    transitions that also shows it every time names the arrow."""
    here = observed(junit(tmp_path, "h.xml", [
        *[(f"test_rst_everywhere[{i}]", {"transitions": "CLOSED>SYN_SENT SYN_SENT>ESTABLISHED ESTABLISHED>CLOSED"},
           "pass") for i in range(12)],
        ("test_handshake[ipv4]", {"transitions": "CLOSED>SYN_SENT SYN_SENT>ESTABLISHED"}, "pass"),
        ("test_handshake[ipv6]", {"transitions": "CLOSED>SYN_SENT SYN_SENT>ESTABLISHED"}, "pass"),
        ("test_sometimes[a]", {"transitions": "CLOSED>SYN_SENT"}, "pass"),
        ("test_sometimes[b]", {"transitions": "LISTEN>CLOSED"}, "pass"),
    ]))
    from tcplab.report.statediagram import _labs
    by_key = {t.key: t for t in TRANSITIONS}
    assert _labs(by_key["CLOSED>SYN_SENT"], here) == ["test_handshake", "test_rst_everywhere", "test_sometimes"]


def ch(t, old, new, sk=1):
    return StateChange(t, old, new, 4, ("198.18.0.1", 1), ("198.18.0.2", 2), sk)


def test_textbook_path_and_gaps():
    close = [ch(1, "CLOSED", "SYN_SENT"), ch(2, "SYN_SENT", "ESTABLISHED"), ch(3, "ESTABLISHED", "FIN_WAIT_1"),
             ch(4, "FIN_WAIT_1", "FIN_WAIT_2"), ch(5, "FIN_WAIT_2", "CLOSED")]
    assert textbook_path(close, "TIME_WAIT")[-1] == "TIME_WAIT"
    assert textbook_path(close, None)[-1] == "CLOSED"
    assert textbook_path(close, "FIN_WAIT_2")[-1] == "FIN_WAIT_2"      # an orphan's timewait socket
    assert textbook_path([ch(1, "SYN_RECV", "ESTABLISHED")])[:2] == ["LISTEN", "SYN_RECV"]   # 6.1's child
    assert gaps(close) == []
    broken = [close[0], close[2]]
    assert gaps(broken) == ["CLOSED -> SYN_SENT then ESTABLISHED -> FIN_WAIT_1 (198.18.0.1:1)"]
    assert gaps([ch(1, "CLOSED", "SYN_SENT", sk=1), ch(2, "LISTEN", "SYN_RECV", sk=2)]) == []   # two sockets


def test_states_command_writes_the_table_and_the_picture(tmp_path):
    import subprocess
    import sys
    every = " ".join(t.key for t in TRANSITIONS if not t.rst and not t.impossible)
    rst = "; ".join(t.key for t in TRANSITIONS if t.rst)
    full = junit(tmp_path, "all.xml", [("test_all", {"transitions": every, "shows": rst}, "pass")])
    out = tmp_path / "docs" / "states.md"
    r = subprocess.run([sys.executable, "-m", "tcplab", "states", "--junit", str(full), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "transitions no lab showed on this kernel: none" in r.stdout
    md = out.read_text()
    assert "![the state diagram, coloured by what the labs observed](states.svg)" in md
    assert "## Transitions that cannot happen here\n- `LISTEN -> SYN_SENT`" in md
    svg = (tmp_path / "docs" / "states.svg").read_text()
    assert set(arrows(svg).values()) == {"tr-here", "tr-impossible"}
    part = junit(tmp_path, "part.xml", [("test_open", {"transitions": "CLOSED>SYN_SENT"}, "pass")])
    r = subprocess.run([sys.executable, "-m", "tcplab", "states", "--junit", str(part), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "LISTEN>SYN_RECV" in r.stdout.splitlines()[-1]


def test_textbook_moments_come_from_the_segments_arrivals():
    """The server's child is in SYN_RECV from the SYN's arrival (the kernel logs it only at the
    third segment); an orphan that handed over to a timewait socket in FIN_WAIT_2 enters
    TIME_WAIT when the peer's FIN arrives, not at the hand-over."""
    from tcplab.observe.states import textbook_steps
    child = [ch(3.0, "LISTEN", "SYN_RECV"), ch(3.0, "SYN_RECV", "ESTABLISHED"), ch(4.0, "ESTABLISHED", "FIN_WAIT_1"),
             ch(4.1, "FIN_WAIT_1", "FIN_WAIT_2"), ch(4.1, "FIN_WAIT_2", "CLOSED")]
    steps = textbook_steps(child, "TIME_WAIT", opened=1.0, peer_fin=4.4)
    assert steps[1:] == [(1.0, "SYN_RECV"), (3.0, "ESTABLISHED"), (4.0, "FIN_WAIT_1"), (4.1, "FIN_WAIT_2"),
                         (4.4, "TIME_WAIT")]
    assert textbook_steps(child, "TIME_WAIT")[-1] == (4.1, "TIME_WAIT")        # no capture: the kernel's moment
    six_one = [ch(3.0, "SYN_RECV", "ESTABLISHED")]
    assert textbook_steps(six_one, opened=1.0)[:2] == [(float("-inf"), "LISTEN"), (1.0, "SYN_RECV")]


def test_no_label_runs_into_a_box_another_label_or_off_the_picture(tmp_path):
    """Every transition labelled with its event and the longest lab name there is (cut to
    NAME_MAX with an ellipsis): each label's box (text measured generously) stays inside the
    diagram and clear of every state box and label."""
    import re
    from pathlib import Path
    from tcplab.report.statediagram import AREA, BOX_W, BOX_H, POS, _label_rect, overlaps
    labs = Path(__file__).resolve().parents[2] / "labs"
    long_name = max((m for f in labs.glob("test_*.py") for m in re.findall(r"def (test_\w+)", f.read_text())), key=len)
    here = observed(junit(tmp_path, "here.xml", [(long_name, {"shows": "; ".join(t.key for t in TRANSITIONS)},
                                                  "pass")]))
    root = ET.fromstring(diagram_svg(here, kernel="6.18"))
    labels, current = [], None
    for e in root.iter(f"{SVG}text"):
        if e.get("class") != "label":
            continue
        x, y, anchor = float(e.get("x")), float(e.get("y")), e.get("text-anchor")
        if current and current[2] == anchor and abs(current[0] - x) < 1 and 0 < y - current[3][-1] <= 14:
            current[3].append(y)
            current[4].append(e.text)
        else:
            current = [x, y, anchor, [y], [e.text]]
            labels.append(current)
    assert len(labels) == len([t for t in TRANSITIONS if not (t.rst and t.dst == "CLOSED")])
    rects = [_label_rect(x, y, a, texts) for x, y, a, _, texts in labels]
    boxes = [(x - BOX_W / 2, y - BOX_H / 2, x + BOX_W / 2, y + BOX_H / 2) for x, y in POS.values()]
    for i, r in enumerate(rects):
        assert AREA[0] <= r[0] and r[2] <= AREA[2], labels[i][4]
        assert not [b for b in boxes if overlaps(r, b)], f"{labels[i][4]} runs into a state's box"
        assert not [labels[j][4] for j, o in enumerate(rects) if j != i and overlaps(r, o)], labels[i][4]


def test_a_lab_declares_a_transition_of_the_diagram_or_hears_which_there_are():
    from tcplab import ConfigError
    from tcplab.report.statediagram import transition
    assert transition("CLOSING", "CLOSED", on="RST").key == "CLOSING>CLOSED on RST"
    assert transition("FIN_WAIT_1", "CLOSING").key == "FIN_WAIT_1>CLOSING"
    with pytest.raises(ConfigError, match=r"FIN_WAIT_2 -> CLOSING is not a transition of RFC 9293's diagram; "
                                          r"from FIN_WAIT_2: TIME_WAIT, CLOSED \(on=\"RST\"\)"):
        transition("FIN_WAIT_2", "CLOSING")
    with pytest.raises(ConfigError, match="'ESTABLISH' is not one of its states"):
        transition("ESTABLISH", "CLOSED")
    with pytest.raises(ConfigError, match=r"on='FIN': the only cause a transition names is on=\"RST\""):
        transition("ESTABLISHED", "CLOSE_WAIT", on="FIN")
