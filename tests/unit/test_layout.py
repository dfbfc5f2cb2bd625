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
    from tcplab.lab.pkt_suite import header_of
    for f in (REPO / "labs").glob("*.pkt"):          # a script's  // lab: H7 points=3  header
        cited.update(header_of(f).get("claims", []))
    from tcplab.cli.coverage import load_claims
    CLAIM_IDS = list(load_claims())
    assert set(CLAIM_IDS) <= cited, f"claims without a lab: {sorted(set(CLAIM_IDS) - cited)}"


#: each layer imports only the layers below it (the package face, tcplab/__init__.py, sits on top)
LAYERS = {"base": 0, "wire": 1, "observe": 2, "lab": 3, "report": 4, "grading": 5, "cli": 9}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in LAYERS else "base"


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    return ".".join(rel.parts[:-1] if path.name == "__init__.py" else rel.parts)


ENGINE = {_module_name(p): p for p in (REPO / "tcplab").rglob("*.py")}


def _imports(path: pathlib.Path, module: str):
    """(line, module) for every tcplab module that ``path`` imports, wherever the import is: at the
    top, inside a function (a cycle hidden there is still a cycle), anywhere but under
    ``if TYPE_CHECKING:``, which type checkers alone read."""
    import ast
    tree = ast.parse(path.read_text())
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]

    def runtime_nodes(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                continue
            yield child
            yield from runtime_nodes(child)
    for node in runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base.startswith("tcplab"):
                continue
            for alias in node.names:   # from .x import y: y may be a module of its own
                sub = f"{base}.{alias.name}"
                yield node.lineno, sub if sub in ENGINE else base
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tcplab"):
                    yield node.lineno, alias.name


def _graph() -> dict[str, set[str]]:
    return {m: {t for _, t in _imports(p, m) if t in ENGINE and t != m} for m, p in ENGINE.items()}


def test_layers_import_only_downwards():
    bad = []
    for module, path in sorted(ENGINE.items()):
        if module in ("tcplab", "tcplab.__main__"):
            continue  # the public face and the entry point sit on top of everything
        mine = LAYERS[_layer(module)]
        for lineno, target in _imports(path, module):
            if target.startswith("tcplab") and LAYERS[_layer(target)] > mine:
                bad.append(f"{path.relative_to(REPO)}:{lineno} ({_layer(module)}) imports {target} ({_layer(target)})")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: each strongly connected component of more than one module
    (Tarjan's algorithm), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_cycles_finds_a_circle_of_three_and_ignores_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles_of_any_length():
    graph = _graph()
    graph.pop("tcplab", None)   # the face imports everything; nothing inside imports the face
    assert not cycles(graph), f"import cycles: {cycles(graph)}"
    assert not [m for m, targets in graph.items() if "tcplab" in targets], "a module imports the package face"


def test_imports_inside_functions_are_seen(tmp_path):
    """The cycle check reads imports wherever they are: a function's ``from .x import y`` counts."""
    path = REPO / "tcplab" / "wire" / "impair.py"
    assert "tcplab.wire.delayline" in {t for _, t in _imports(path, "tcplab.wire.impair")}   # in WireImpairments.apply
    topo = REPO / "tcplab" / "lab" / "topology.py"
    inner = {t for _, t in _imports(topo, "tcplab.lab.topology")}
    assert "tcplab.lab.sockets" in inner      # imported inside Host.listen


def test_public_names_are_pinned():
    import tcplab
    assert sorted(tcplab.__all__) == sorted([
        "Topology", "Drop", "Netem", "Capture", "RingCapture", "Trace", "Connection", "Segment", "Expectation",
        "HANDSHAKE", "until", "TcplabError", "ConfigError", "Unsupported", "CaptureIncomplete", "WaitTimeout",
        "ExpectationFailed", "Assignment", "Sandbox", "Limits", "Score", "StatePoller", "ScriptedPeer", "Conn", "Sending",
        "TcpInfo"])
    for name in tcplab.__all__:
        assert getattr(tcplab, name) is not None


def test_old_flat_module_paths_are_gone():
    import importlib
    import pytest
    for old in ("tcplab.impair", "tcplab.trace", "tcplab.topology"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)


def test_labs_and_readme_use_only_the_public_face():
    import re as _re
    texts = {f.name: f.read_text() for f in (REPO / "labs").glob("test_*.py")}
    texts["README.md"] = (REPO / "README.md").read_text()
    for name, text in texts.items():
        inner = _re.findall(r"from tcplab\.(\w+)", text)
        assert not inner, f"{name} imports tcplab.{inner[0]}: use  from tcplab import ..."


# -- docs/layout.md's rooms, generated from the code ----------------------------------------------

ROOMS_BEGIN, ROOMS_END = "<!-- rooms: generated by PYTHONPATH=. .venv/bin/python tests/unit/test_layout.py -->", "<!-- /rooms -->"
LAYER_WORDS = {"base": "base (`tcplab/*.py`)", "wire": "`tcplab/wire/`", "observe": "`tcplab/observe/`",
               "lab": "`tcplab/lab/`", "report": "`tcplab/report/`", "grading": "`tcplab/grading/`",
               "cli": "`tcplab/cli/`"}


def rooms_table() -> str:
    """Every module of the engine, by layer, with the first sentence of its docstring and the
    layers it may import."""
    import ast
    order = sorted(LAYERS, key=LAYERS.get)
    rows = ["| layer | may import | module | what it is |", "|---|---|---|---|"]
    for layer in order:
        below = ", ".join(l for l in order if LAYERS[l] < LAYERS[layer]) or "the standard library and "\
            "the chosen libraries only"
        mods = sorted(m for m in ENGINE if _layer(m) == layer and m not in ("tcplab", "tcplab.__main__")
                      and not m.endswith("__init__") and ENGINE[m].name != "__init__.py")
        for i, m in enumerate(mods):
            doc = ast.get_docstring(ast.parse(ENGINE[m].read_text())) or ""
            first = " ".join(doc.split("\n\n")[0].split())
            first = first.split(". ")[0].rstrip(".").replace("|", "\\|")
            rows.append(f"| {LAYER_WORDS[layer] if i == 0 else ''} | {below if i == 0 else ''} | "
                        f"`{m.split('.', 1)[1]}` | {first} |")
    return "\n".join(rows)


def test_every_module_has_a_docstring_that_says_what_it_is():
    import ast
    bare = [m for m, p in ENGINE.items() if p.name != "__init__.py" and not ast.get_docstring(ast.parse(p.read_text()))]
    assert not bare, f"modules without a docstring: {bare}"


def test_the_layout_page_names_every_room():
    page = (REPO / "docs" / "layout.md").read_text()
    assert ROOMS_BEGIN in page and ROOMS_END in page
    inside = page.split(ROOMS_BEGIN)[1].split(ROOMS_END)[0].strip()
    assert inside == rooms_table(), "docs/layout.md's rooms are out of date: run  PYTHONPATH=. .venv/bin/python tests/unit/test_layout.py"


if __name__ == "__main__":   # regenerate docs/layout.md's rooms
    path = REPO / "docs" / "layout.md"
    text = path.read_text()
    head, rest = text.split(ROOMS_BEGIN)
    path.write_text(head + ROOMS_BEGIN + "\n" + rooms_table() + "\n" + ROOMS_END + rest.split(ROOMS_END)[1])
