"""The claim table, from JUnit XML written the way the plugin writes it."""
from tcplab.cli.coverage import load_claims, table

CLAIM_IDS = list(load_claims())

CASE = ('<testcase classname="labs.test_x" name="{name}"><properties><property name="claims" value="{claims}"/>'
        '</properties>{extra}</testcase>')


def junit(tmp_path, cases, name="j.xml"):
    body = "".join(CASE.format(name=n, claims=c, extra=e) for n, c, e in cases)
    path = tmp_path / name
    path.write_text(f'<testsuites><testsuite name="pytest">{body}</testsuite></testsuites>')
    return path


def test_every_claim_passing_is_ok(tmp_path):
    md, ok = table(junit(tmp_path, [("t[ipv4]", " ".join(CLAIM_IDS), "")]))
    assert ok
    assert "| H1 | segment 1" in md and "| test_x::t | 1 pass |" in md


def test_a_failing_or_missing_claim_is_not_ok(tmp_path):
    cases = [("a", " ".join(CLAIM_IDS[1:]), ""), ("b", "H1", '<failure message="x"/>')]
    md, ok = table(junit(tmp_path, cases))
    assert not ok
    assert "| F1 | the six flag bits, printed as tcpdump letters | - | no lab |" in md
    assert "**1 FAIL**" in md


def test_extra_columns_for_other_kernels(tmp_path):
    main = junit(tmp_path, [("a", " ".join(CLAIM_IDS), "")])
    vm = junit(tmp_path, [("a", "H1", '<skipped message="no netem"/>')], "vm.xml")
    md, ok = table(main, [("6.1", vm)])
    assert ok
    assert md.splitlines()[0].endswith("| this kernel | 6.1 |")
    h1 = next(line for line in md.splitlines() if line.startswith("| H1 "))
    assert h1.endswith("| 1 pass | 0 pass, 1 skipped |")


def test_the_claims_come_from_the_docs_page(tmp_path):
    claims = load_claims()
    assert list(claims)[:2] == ["F1", "H1"] and len(claims) == 31 and list(claims)[-1] == "T10"
    assert claims["H1"] == "segment 1: SYN only, random seq x; client in SYN_SENT"
    page = tmp_path / "claims.md"
    page.write_text("# Mine\n- **X1** *a course's own claim.* Longer text.\nnot a claim\n")
    assert load_claims(page) == {"X1": "a course's own claim"}
    md, ok = table(junit(tmp_path, [("a", "X1", "")]), claims=load_claims(page))
    assert ok and "| X1 | a course's own claim |" in md
