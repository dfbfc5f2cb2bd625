"""The repo's layout promises: the repo's fixtures/ wins, and pip installs the engine and its plugin."""
import pathlib
import re

import fixtures

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_fixtures_package_is_this_repos():
    assert pathlib.Path(fixtures.__file__).resolve().parent == REPO / "fixtures"


def test_pip_installs_the_engine_and_the_plugin_from_fixtures():
    import tomllib
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["tool"]["setuptools"]["packages"] == ["tcplab", "tcplab_pytest"]
    assert meta["tool"]["setuptools"]["package-dir"] == {"tcplab_pytest": "fixtures"}   # one copy
    assert meta["project"]["entry-points"]["pytest11"] == {"tcplab": "tcplab_pytest.plugin"}


def test_every_claim_is_cited_by_a_lab():
    cited = set()
    for f in (REPO / "labs").glob("test_*.py"):
        for m in re.finditer(r'@pytest\.mark\.lab\(([^)]*)\)', f.read_text()):
            cited.update(re.findall(r'"([A-Z]\d)"', m.group(1)))
    from tcplab.coverage import CLAIM_IDS
    assert set(CLAIM_IDS) <= cited, f"claims without a lab: {sorted(set(CLAIM_IDS) - cited)}"
