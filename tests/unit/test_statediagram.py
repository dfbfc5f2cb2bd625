"""The state diagram and table from JUnit XML (no kernel): which arrows are coloured, which lab
names them, the impossible transitions and their reasons, a valid SVG."""
import xml.etree.ElementTree as ET

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
