"""The repo's layout promises: the repo's fixtures/ wins, and pip installs only the engine."""
import pathlib
import re

import fixtures

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_fixtures_package_is_this_repos():
    assert pathlib.Path(fixtures.__file__).resolve().parent == REPO / "fixtures"


def test_only_the_engine_is_installed():
    text = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^\[tool\.setuptools\]\n(?:#.*\n)*packages = \["tcplab"\]$', text, re.M)


def test_every_claim_is_cited_by_a_lab():
    cited = set()
    for f in (REPO / "labs").glob("test_*.py"):
        for m in re.finditer(r'@pytest\.mark\.lab\(([^)]*)\)', f.read_text()):
            cited.update(re.findall(r'"([A-Z]\d)"', m.group(1)))
    from tcplab.coverage import CLAIM_IDS
    assert set(CLAIM_IDS) <= cited, f"claims without a lab: {sorted(set(CLAIM_IDS) - cited)}"
