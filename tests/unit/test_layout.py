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
    # every package of the engine, or a non-editable install (Gradescope's, the container's) lacks it
    engine = sorted(str(p.parent.relative_to(REPO)).replace("/", ".") for p in (REPO / "tcplab").rglob("__init__.py"))
    assert meta["tool"]["setuptools"]["packages"] == [*engine, "tcplab_pytest"]
    assert meta["tool"]["setuptools"]["package-dir"] == {"tcplab_pytest": "fixtures"}   # one copy
    assert meta["project"]["entry-points"]["pytest11"] == {"tcplab": "tcplab_pytest.plugin"}


def test_every_claim_is_cited_by_a_lab():
    cited = set()
    for f in (REPO / "labs").glob("test_*.py"):
        for m in re.finditer(r'@pytest\.mark\.lab\(([^)]*)\)', f.read_text()):
            cited.update(re.findall(r'"([A-Z]\d+)"', m.group(1)))
    from tcplab.cli.coverage import load_claims
    CLAIM_IDS = list(load_claims())
    assert set(CLAIM_IDS) <= cited, f"claims without a lab: {sorted(set(CLAIM_IDS) - cited)}"


LAYERS = {"base": 0, "observe": 1, "lab": 2, "report": 3, "grading": 4, "cli": 9}   # each imports only layers below it


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in LAYERS else "base"


def _imports(path: pathlib.Path, module: str):
    import ast
    tree = ast.parse(path.read_text())

    def runtime_nodes(node):  # imports under `if TYPE_CHECKING:` exist for type checkers only
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                continue
            yield child
            yield from runtime_nodes(child)
    for node in runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = module.split(".")[:-node.level] if not path.name == "__init__.py" else \
                module.split(".")[:len(module.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            yield node.lineno, target
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tcplab"):
            yield node.lineno, node.module


def test_layers_import_only_downwards():
    bad = []
    for path in sorted((REPO / "tcplab").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        module = ".".join(rel.parts[:-1] if path.name == "__init__.py" else rel.parts)
        if module in ("tcplab", "tcplab.__main__"):
            continue  # the public face and the entry point sit on top of everything
        mine = LAYERS[_layer(module)]
        for lineno, target in _imports(path, module):
            if target.startswith("tcplab") and LAYERS[_layer(target)] > mine:
                bad.append(f"{rel}.py:{lineno} ({_layer(module)}) imports {target} ({_layer(target)})")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_no_import_cycles_between_modules():
    import ast  # noqa: F401
    graph = {}
    for path in (REPO / "tcplab").rglob("*.py"):
        rel = path.relative_to(REPO).with_suffix("")
        module = ".".join(rel.parts[:-1] if path.name == "__init__.py" else rel.parts)
        graph[module] = {t for _, t in _imports(path, module) if t.startswith("tcplab")}
    for a, targets in graph.items():
        for b in targets:
            if b != a and a in graph.get(b, ()) and "tcplab" not in (a, b):
                assert False, f"{a} and {b} import each other"


def test_public_names_are_pinned():
    import tcplab
    assert sorted(tcplab.__all__) == sorted([
        "Topology", "Drop", "Netem", "Capture", "RingCapture", "Trace", "Connection", "Segment", "Expectation",
        "until", "TcplabError", "ConfigError", "Unsupported", "CaptureIncomplete", "WaitTimeout",
        "ExpectationFailed", "Assignment", "Sandbox", "Limits", "Score", "StatePoller", "Conn", "Sending",
        "TcpInfo"])
    for name in tcplab.__all__:
        assert getattr(tcplab, name) is not None


def test_old_flat_module_paths_still_import_with_a_deprecation_warning():
    import pytest
    import tcplab
    with pytest.warns(DeprecationWarning, match=r"tcplab.impair is deprecated .*\(from tcplab import Drop\)"):
        from tcplab.impair import Drop
    with pytest.warns(DeprecationWarning, match=r"tcplab.trace is deprecated"):
        from tcplab.trace import Trace
    assert Drop is tcplab.Drop and Trace is tcplab.Trace


def test_labs_and_readme_use_only_the_public_face():
    import re as _re
    texts = {f.name: f.read_text() for f in (REPO / "labs").glob("test_*.py")}
    texts["README.md"] = (REPO / "README.md").read_text()
    for name, text in texts.items():
        inner = _re.findall(r"from tcplab\.(\w+)", text)
        assert not inner, f"{name} imports tcplab.{inner[0]}: use  from tcplab import ..."
