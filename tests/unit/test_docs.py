"""The docs stay true: every command in a shell block of the README and docs/ names a command,
option, script and file that exist.  (What the commands then do is tested where it is built.)"""
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", REPO / "assignments" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
REPO_DIRS = ("labs/", "tests/", "assignments/", "ci/", "bench/", "docs/", "tcplab/", "fixtures/")


def shell_lines(page: Path):
    """(line number, command) of every line in a ```sh block, comments and heredoc bodies left out."""
    in_block, heredoc = False, None
    for n, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_block = line.strip() in ("```sh", "```bash", "```console")
            continue
        if not in_block:
            continue
        if heredoc:
            if line.strip() == heredoc:
                heredoc = None
            continue
        m = re.search(r"<<'?(\w+)'?", line)
        if m:
            heredoc = m.group(1)
        code = re.split(r"\s+#", line, maxsplit=1)[0].strip()
        if code:
            yield n, code


def words(code: str) -> list[str]:
    w = shlex.split(code.split("<<")[0])
    while w and (w[0] == "sudo" or re.match(r"^[A-Z_]+=", w[0]) or w[0] == "env"):
        w = w[1:]
    return w


def tcplab_help(cmd: str) -> str:
    from tcplab.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        main([cmd, "--help"])
    return out.getvalue()


def pytest_options() -> str:
    return (REPO / "fixtures" / "plugin.py").read_text() + (REPO / "fixtures" / "grading.py").read_text()


def check(w: list[str]) -> list[str]:
    """What in this command does not exist."""
    problems = []
    if not w:
        return problems
    head = w[0]
    rest = w[1:]
    if head in (".venv/bin/python", "python", "python3") and rest[:1] == ["-m"]:
        head, rest = rest[1], rest[2:]
    elif head.endswith("/tcplab"):
        head = "tcplab"
    if head == "tcplab":
        from tcplab.cli import COMMANDS
        if not rest or rest[0] not in COMMANDS:
            return [f"tcplab has no command {rest[:1]}"]
        text = tcplab_help(rest[0])
        problems += [f"tcplab {rest[0]} has no option {o}" for o in rest if o.startswith("--") and o != "--"
                     and o.split("=")[0] not in text]
    elif head in ("pytest", "py.test"):
        opts = pytest_options()
        problems += [f"the plugin has no option {o}" for o in rest
                     if o.startswith(("--tcplab", "--grade-json", "--submission")) and f'"{o.split("=")[0]}"' not in opts]
    elif head.startswith(("ci/", "bench/", ".ci/")) or (head in ("bash",) and rest):
        script = REPO / (rest[0] if head == "bash" else head)
        if not script.exists():
            return [f"no script {script.relative_to(REPO)}"]
        text = script.read_text()
        args = rest[1:] if head == "bash" else rest
        args = args[:args.index("--")] if "--" in args else args
        wraps = re.search(r'-m tcplab (\w+) "\$@"', text)
        if wraps:      # a wrapper of a tcplab command: its options are that command's
            return check(["tcplab", wraps.group(1), *args])
        if re.search(r'-m pytest .*"\$@"', text):   # a wrapper of pytest
            return check(["pytest", *args])
        problems += [f"{script.name} has no option {o}" for o in args if o.startswith("--")
                     and o.split("=")[0] not in text]
    else:
        return problems
    for arg in rest:
        path = arg.split("::")[0]
        if path.startswith(REPO_DIRS) and not any(c in path for c in "<>*"):
            if not (REPO / path).exists():
                problems.append(f"no file or folder {path}")
    return problems


def all_commands():
    for page in PAGES:
        for n, code in shell_lines(page):
            yield pytest.param(page, n, code, id=f"{page.relative_to(REPO)}:{n}")


@pytest.mark.parametrize("page, n, code", list(all_commands()))
def test_command_in_docs_exists(page, n, code):
    assert check(words(code)) == [], f"{page.relative_to(REPO)}:{n}: {code}"


def test_the_check_catches_what_does_not_exist():
    assert check(words("sudo tcplab grade a b --no-such-flag")) == ["tcplab grade has no option --no-such-flag"]
    assert check(words("tcplab nosuch")) == ["tcplab has no command ['nosuch']"]
    assert check(words("sudo pytest labs/test_nosuch.py --tcplab-nosuch")) == [
        "the plugin has no option --tcplab-nosuch", "no file or folder labs/test_nosuch.py"]
    assert check(words("sudo ci/nosuch")) == ["no script ci/nosuch"]
    assert check(words("sudo ci/labs -k close")) == []


def test_every_docs_page_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text()
    for page in (REPO / "docs").glob("*.md"):
        assert f"docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"


def test_the_reference_has_every_command_and_option():
    page = (REPO / "docs" / "reference.md").read_text()
    from tcplab.cli import COMMANDS
    for name in COMMANDS:
        usage = tcplab_help(name).split("\n\n")[0].split()
        assert f"### tcplab {name}" in page and " ".join(usage) in " ".join(page.split()), \
            f"docs/reference.md: tcplab {name} is missing or its --help changed (regenerate the page)"
    for option in re.findall(r'addoption\("(--[\w-]+)"', pytest_options()):
        assert f"`{option}" in page, f"docs/reference.md lacks the pytest option {option}"


def test_the_students_package_list_is_ci_setups():
    """The README's apt-get line for an administrator names exactly the packages ci/setup checks
    by default (and python3-venv, which it needs for the venv)."""
    setup = (REPO / "ci" / "setup").read_text()
    block = setup[setup.index("pkgs=("):setup.index("\n)\n", setup.index("pkgs=("))]
    wanted = set(re.findall(r'"([a-z0-9.+-]+):', block)) | {"python3-venv"}
    readme = " ".join((REPO / "README.md").read_text().split())
    listed = re.search(r"`sudo apt-get install ([a-z0-9.+ -]+)`", readme).group(1).split()
    assert set(listed) == wanted, (listed, wanted)
