"""Every command of README.md is either run here as written or mapped to the test that runs it.

The README's shell blocks (```bash, ```sh, ```shell, ```console) are split into commands
(backslash continuations joined, comments dropped) and its ```python blocks taken whole.
Each one is classified:

* ``pip install`` lines: the extras they name must exist in ``pyproject.toml`` and any
  other package must be one the project installs (nothing is installed here);
* cheap ``secagg`` commands (``--version``, ``--help``, ``secagg audit`` from parameters):
  run as written, in a temporary directory, with this interpreter's console scripts first
  on ``PATH``;
* expensive commands and code fragments: looked up in :data:`MAPPED`, which names the test
  that exercises each one; that test file must exist and contain the command's key parts
  (or the module it drives must);
* any other Python block: run as written in a fresh interpreter.

A README command that is none of these fails :func:`test_every_readme_command_is_run_or_mapped`
with a message naming it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: where this interpreter's console scripts (``secagg``, ``flwr``, ...) live
SCRIPTS = Path(sys.executable).parent

SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console", "shell-session"})
PYTHON_LANGUAGES = frozenset({"python", "py", "python3"})


@dataclass(frozen=True)
class Block:
    """One fenced block of the README: its language, its text and the line it starts on."""

    language: str
    text: str
    line: int


@dataclass(frozen=True)
class Command:
    """One command: a logical shell line, or a whole Python block."""

    kind: str  # "shell" or "python"
    text: str
    line: int

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text) if self.kind == "shell" else []

    def __str__(self) -> str:
        first = self.text.strip().splitlines()[0] if self.text.strip() else ""
        shown = self.text if self.kind == "shell" else f"python block starting {first!r}"
        return f"README.md line {self.line}: {shown}"


@dataclass(frozen=True)
class Mapped:
    """A README command exercised elsewhere: the test that runs it and what it must contain.

    ``parts`` must each occur in ``test`` or in one of ``via`` (the modules or scripts the
    test drives); ``files`` must exist.
    """

    pattern: str
    test: str
    parts: tuple[str, ...] = ()
    via: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    kind: str = "shell"

    def matches(self, command: Command) -> bool:
        return command.kind == self.kind and re.search(self.pattern, command.text) is not None


def fenced_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text (``` or ~~~, indented ones included)."""
    blocks: list[Block] = []
    fence = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = fence.match(lines[i])
        if opening is None:
            i += 1
            continue
        marker, indent = opening["fence"], len(opening["indent"])
        language = opening["info"].strip().split(" ")[0].lower() if opening["info"].strip() else ""
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = fence.match(lines[j])
            if (
                closing
                and closing["fence"][0] == marker[0]
                and len(closing["fence"]) >= len(marker)
                and not closing["info"].strip()
            ):
                break
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        blocks.append(Block(language, "\n".join(body), i + 2))
        i = j + 1
    return blocks


def strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment (a ``#`` after a blank, outside quotes)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def shell_commands(block: Block) -> list[Command]:
    """The logical commands of a shell block: continuations joined, comments and prompts dropped."""
    commands: list[Command] = []
    pending: list[str] = []
    start = block.line
    for offset, raw in enumerate(block.text.splitlines()):
        line = raw.strip()
        if not pending:
            start = block.line + offset
            if block.language in {"console", "shell-session"}:
                if not line.startswith("$ "):
                    continue  # program output
                line = line[2:]
        line = strip_comment(line)
        if not line and not pending:
            continue
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        commands.append(Command("shell", " ".join(p for p in pending if p), start))
        pending = []
    if pending:
        commands.append(Command("shell", " ".join(p for p in pending if p), start))
    return commands


def readme_commands(text: str | None = None) -> list[Command]:
    """Every command of the README, in order."""
    commands: list[Command] = []
    for block in fenced_blocks(README.read_text(encoding="utf-8") if text is None else text):
        if block.language in SHELL_LANGUAGES:
            commands.extend(shell_commands(block))
        elif block.language in PYTHON_LANGUAGES:
            commands.append(Command("python", block.text, block.line))
    return commands


# -- commands exercised by other tests -------------------------------------------------------

FLOWER_DEPLOYMENT = "tests/flower/test_deployment.py"
#: what the deployment test drives: the same command lines, built by LocalDeployment
FLOWER_DRIVER = ("protocols/flower/deployment.py",)

MAPPED: tuple[Mapped, ...] = (
    Mapped(
        r"^bash \.ci/setup && \.venv/bin/secagg demo$",
        "tests/test_demo.py",
        parts=('"demo"',),
        files=(".ci/setup",),
    ),
    Mapped(
        r"^bash \.ci/test$",
        "tests/test_readme_commands.py::test_ci_runs_the_readme_test_command",
        parts=("def test_ci_runs_the_readme_test_command",),
        files=(".ci/test", ".ci/run"),
    ),
    Mapped(
        r"^(DOCS_OUT=\S+ )?bash \.ci/docs$",
        "tests/test_readme_commands.py::test_ci_runs_the_readme_test_command",
        parts=('"bash .ci/docs"', "DOCS_OUT"),
        via=(".ci/docs",),
        files=(".ci/docs",),
    ),
    Mapped(r"^(\.venv/bin/)?secagg demo\b", "tests/test_demo.py", parts=('"demo"',)),
    Mapped(
        r"^(\.venv/bin/)?secagg evaluate\b",
        "tests/threat_models/test_evaluate.py",
        parts=("evaluate",),
    ),
    Mapped(r"^(\.venv/bin/)?secagg bench\b", "tests/test_bench.py", parts=("bench",)),
    Mapped(r"^(\.venv/bin/)?secagg audit\b", "tests/dp/test_cli_audit.py", parts=('"audit"',)),
    Mapped(
        r"^flower-superlink\b",
        FLOWER_DEPLOYMENT,
        parts=("flower-superlink", "--insecure", "--disable-runtime-dependency-installation"),
        via=FLOWER_DRIVER,
    ),
    # A SuperNode: the processes and their node config run in the deployment test (under a
    # semi-malicious policy, no identity keys); the identity-key entries of the node config
    # are read by the mod in the signed rounds of the workflow test.
    Mapped(
        r"^flower-supernode\b",
        FLOWER_DEPLOYMENT,
        parts=(
            "flower-supernode",
            "--superlink",
            "--node-config",
            "partition-id",
            "num-partitions",
        ),
        via=FLOWER_DRIVER,
    ),
    Mapped(
        r"^flower-supernode\b.*secagg-identity",
        "tests/flower/test_workflow.py::test_a_signed_round_verifies_against_the_pki",
        parts=("secagg-client-id", "secagg-identity", "secagg-pki"),
    ),
    # ``flwr run`` with a run config is how the deployment test submits its app; the
    # example app's own ``pki-path`` entry is read by examples/flower_app, which no test runs.
    Mapped(
        r"^flwr run\b",
        FLOWER_DEPLOYMENT,
        parts=('"flwr", "run"', "--run-config"),
        via=FLOWER_DRIVER,
    ),
    Mapped(
        r"^(python|\.venv/bin/python) examples/plain_pytorch\.py\b",
        "tests/test_readme_commands.py::test_plain_pytorch_example_runs",
        parts=("examples/plain_pytorch.py",),
    ),
    Mapped(
        r"^(python|\.venv/bin/python) examples/opacus_clients\.py\b",
        "tests/test_readme_commands.py::test_opacus_example_runs",
        parts=("examples/opacus_clients.py",),
    ),
    Mapped(
        r"^(python|\.venv/bin/python) examples/flower_app/run_(simulation|deployment)\.py\b",
        FLOWER_DEPLOYMENT,
        parts=("LocalDeployment",),
        via=FLOWER_DRIVER,
    ),
    # The quick start's two loops: fragments (``local_update`` and ``clients`` are the
    # reader's); examples/plain_pytorch.py is the same loop, runnable.
    Mapped(
        r"local_update\(",
        "tests/test_readme_commands.py::test_plain_pytorch_example_runs",
        parts=("SecureAggregator(", "sample_cohort()", "aggregator.mean(", "local_update("),
        via=("examples/plain_pytorch.py",),
        kind="python",
    ),
    # The Flower client and server apps: a fragment of two files.
    Mapped(
        r"SecureAggregationMod\(",
        "tests/flower/test_simulation.py",
        parts=("SecureAggregationMod(", "SecureAggregationWorkflow(", "ClientApp(", "ServerApp("),
        kind="python",
    ),
)


# -- commands run here -----------------------------------------------------------------------

#: placeholders of a synopsis: a line with one of these is documentation, not a command
PLACEHOLDER = re.compile(r"^(\.\.\.|[A-Z][A-Z_]*(\.json)?|\[.*|.*\]|<.*>)$")


def _secagg_arguments(words: list[str]) -> list[str] | None:
    if words[:1] in (["secagg"], [".venv/bin/secagg"]):
        return words[1:]
    if (
        len(words) >= 3
        and words[0] in ("python", ".venv/bin/python")
        and words[1:3] == ["-m", "secagg"]
    ):
        return words[3:]
    return None


def runs_here(command: Command) -> bool:
    """A cheap ``secagg`` command: version, help, or an audit from parameters."""
    if command.kind != "shell" or any(op in command.text for op in ("&&", "||", ";", "|")):
        return False
    args = _secagg_arguments(command.words)
    if args is None or any(PLACEHOLDER.match(a) for a in args):
        return False
    if args in (["--version"], ["--help"], ["-h"]) or args[1:] in (["--help"], ["-h"]):
        return True
    return args[:1] == ["audit"] and "--noise-multiplier" in args


def run_shell(command: Command, cwd: Path) -> subprocess.CompletedProcess[str]:
    text = re.sub(r"(?<![\w/])\.venv/bin/", f"{SCRIPTS}/", command.text)
    env = dict(os.environ, PATH=f"{SCRIPTS}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", text],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def pyproject() -> dict[str, object]:
    tomllib = pytest.importorskip("tomllib")
    data: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return data


def is_pip_install(command: Command) -> bool:
    words = command.words
    for start in range(len(words) - 1):
        if words[start] in ("pip", "pip3") or words[start].endswith("/pip"):
            return words[start + 1] == "install"
        if words[start : start + 3] == ["-m", "pip", "install"]:
            return True
    return False


def pip_install_problems(command: Command) -> list[str]:
    """What in a ``pip install`` line names an extra or a package the project does not have."""
    project = pyproject()["project"]
    assert isinstance(project, dict)
    extras = set(project.get("optional-dependencies", {}))
    name = str(project["name"])
    known = {
        re.split(r"[\[<>=!~; ]", str(d), maxsplit=1)[0].lower()
        for d in project.get("dependencies", [])
    }
    for group in project.get("optional-dependencies", {}).values():
        known |= {re.split(r"[\[<>=!~; ]", str(d), maxsplit=1)[0].lower() for d in group}
    setup = (ROOT / ".ci" / "setup").read_text(encoding="utf-8")
    words = command.words
    start = words.index("install") + 1
    problems: list[str] = []
    skip_next = False
    for word in words[start:]:
        if skip_next:
            skip_next = False
            continue
        if word in ("--index-url", "--extra-index-url", "-i", "-r", "-c", "--find-links", "-f"):
            skip_next = True
            continue
        if word.startswith("-") and word != "-e":
            continue
        if word == "-e":
            continue
        target, _, bracket = word.partition("[")
        wanted = {e.strip() for e in bracket.rstrip("]").split(",") if e.strip()}
        if (
            target in (".", "./")
            or target.rstrip("/") == str(ROOT)
            or target.lower().replace("_", "-") == name
        ):
            problems += [f"extra {e!r} is not in pyproject.toml" for e in sorted(wanted - extras)]
            continue
        package = re.split(r"[<>=!~; ]", target, maxsplit=1)[0].lower()
        if package not in known and package not in setup:
            problems.append(
                f"{package!r} is neither a dependency of the project nor installed by .ci/setup"
            )
    return problems


@dataclass
class Classification:
    """How each README command is exercised."""

    pip: list[Command] = field(default_factory=list)
    run: list[Command] = field(default_factory=list)
    mapped: list[tuple[Command, Mapped]] = field(default_factory=list)
    python: list[Command] = field(default_factory=list)
    unclassified: list[Command] = field(default_factory=list)


def classify(commands: list[Command]) -> Classification:
    result = Classification()
    for command in commands:
        mappings = [m for m in MAPPED if m.matches(command)]
        if command.kind == "shell" and is_pip_install(command):
            result.pip.append(command)
        elif runs_here(command):
            result.run.append(command)
        elif mappings:
            result.mapped += [(command, m) for m in mappings]
        elif command.kind == "python":
            result.python.append(command)
        else:
            result.unclassified.append(command)
    return result


COMMANDS = readme_commands()
CLASSES = classify(COMMANDS)


def _ids(commands: list[Command]) -> list[str]:
    return [f"line{c.line}" for c in commands]


# -- the tests -------------------------------------------------------------------------------


def test_the_readme_has_commands_to_check() -> None:
    assert COMMANDS, "no ```bash or ```python block found in README.md"
    assert any(c.kind == "python" for c in COMMANDS) and any(c.kind == "shell" for c in COMMANDS)


def test_every_readme_command_is_run_or_mapped() -> None:
    assert not CLASSES.unclassified, (
        "README commands neither run by tests/test_readme_commands.py nor mapped to the test that "
        "exercises them (add them to MAPPED, or make them cheap to run):\n"
        + "\n".join(f"  {c}" for c in CLASSES.unclassified)
    )


@pytest.mark.parametrize(
    ("command", "mapping"),
    CLASSES.mapped,
    ids=[f"line{c.line}-{m.test.rsplit('/', 1)[-1]}" for c, m in CLASSES.mapped],
)
def test_mapped_command_names_a_test_that_exercises_it(command: Command, mapping: Mapped) -> None:
    test_file, _, test_name = mapping.test.partition("::")
    path = ROOT / test_file
    assert path.is_file(), f"{command}: mapped to {mapping.test}, which does not exist"
    sources = path.read_text(encoding="utf-8") + "".join(
        (ROOT / v).read_text(encoding="utf-8") for v in mapping.via
    )
    if test_name:
        assert re.search(rf"^def {re.escape(test_name)}\(", sources, flags=re.MULTILINE), (
            f"{command}: mapped to {mapping.test}, which has no such test"
        )
    missing = [part for part in mapping.parts if part not in sources]
    assert not missing, (
        f"{command}: {mapping.test} (or {', '.join(mapping.via) or 'nothing it drives'}) lacks "
        f"{missing}"
    )
    absent = [f for f in mapping.files if not (ROOT / f).exists()]
    assert not absent, f"{command}: {absent} do not exist"
    if command.kind == "shell":
        for word in command.words:
            if re.match(r"^(examples|tests|benchmarks|\.ci)/", word):
                assert (ROOT / word).exists(), f"{command}: {word} does not exist"


@pytest.mark.parametrize("command", CLASSES.pip, ids=_ids(CLASSES.pip))
def test_pip_install_names_only_what_the_project_has(command: Command) -> None:
    assert not pip_install_problems(command), f"{command}: {pip_install_problems(command)}"


@pytest.mark.parametrize("command", CLASSES.run, ids=_ids(CLASSES.run))
def test_cheap_command_runs_as_written(command: Command, tmp_path: Path) -> None:
    done = run_shell(command, tmp_path)
    assert done.returncode == 0, (
        f"{command}: exit status {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    assert done.stdout.strip() or any(tmp_path.iterdir()), f"{command}: printed and wrote nothing"
    if command.words[-1:] == ["--version"]:
        version = pyproject()["project"]
        assert isinstance(version, dict)
        assert str(version["version"]) in done.stdout


@pytest.mark.parametrize("command", CLASSES.python, ids=_ids(CLASSES.python))
def test_python_block_runs_as_written(command: Command, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(command.text, encoding="utf-8")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{command}: exit status {done.returncode}\n{done.stderr}"


def test_ci_runs_the_readme_test_command() -> None:
    """``.ci/run`` runs the README's marked test command, and that command runs every check."""
    done = subprocess.run(
        [
            "awk",
            r"/<!-- test-command -->/{grab=1; next} grab && "
            r"/^```/{if (inblock) exit; inblock=1; next} grab && inblock {print}",
            "README.md",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    command = done.stdout.strip()
    assert command == "bash .ci/test"
    assert "README.md" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_test = (ROOT / ".ci" / "test").read_text(encoding="utf-8")
    for step in ("bash .ci/setup", "pytest", "ruff check", "mypy", "bash .ci/docs"):
        assert step in ci_test, f".ci/test does not run {step!r}"


# -- the classification itself ---------------------------------------------------------------


SAMPLE = """
Intro.

```bash
bash .ci/setup && .venv/bin/secagg demo   # the demo
secagg audit --noise-multiplier 1 \\
  --sampling-rate 0.5 --rounds 3 --delta 1e-3
pip install "secagg-fl[flower]"
frobnicate --now
```

  ```console
  $ secagg --version
  secagg 0.1.0
  ```

```python
print("hello")
```

```
not a command
```
"""


def test_extraction_joins_continuations_drops_comments_prompts_and_output() -> None:
    commands = readme_commands(SAMPLE)
    assert [c.text for c in commands if c.kind == "shell"] == [
        "bash .ci/setup && .venv/bin/secagg demo",
        "secagg audit --noise-multiplier 1 --sampling-rate 0.5 --rounds 3 --delta 1e-3",
        'pip install "secagg-fl[flower]"',
        "frobnicate --now",
        "secagg --version",
    ]
    assert [c.text for c in commands if c.kind == "python"] == ['print("hello")']


def test_an_unknown_command_is_unclassified_and_named() -> None:
    classes = classify(readme_commands(SAMPLE))
    assert [c.text for c in classes.unclassified] == ["frobnicate --now"]
    assert [c.text for c in classes.run] == [
        "secagg audit --noise-multiplier 1 --sampling-rate 0.5 --rounds 3 --delta 1e-3",
        "secagg --version",
    ]
    assert [c.text for c, _ in classes.mapped] == ["bash .ci/setup && .venv/bin/secagg demo"]
    assert "frobnicate --now" in str(classes.unclassified[0])


def test_a_synopsis_with_placeholders_is_not_run() -> None:
    synopsis = Command("shell", "secagg audit --noise-multiplier Z --sampling-rate Q --rounds T", 1)
    assert not runs_here(synopsis)
    assert runs_here(Command("shell", "secagg audit --noise-multiplier 2 --rounds 3", 1))


def test_pip_install_of_a_missing_extra_is_refused() -> None:
    assert pip_install_problems(Command("shell", 'pip install "secagg-fl[flower]"', 1)) == []
    assert pip_install_problems(Command("shell", 'pip install -e ".[no-such-extra]"', 1)) == [
        "extra 'no-such-extra' is not in pyproject.toml"
    ]
    assert pip_install_problems(Command("shell", "pip install leftpad", 1)) != []


def test_the_runner_runs_a_cheap_command_as_written(tmp_path: Path) -> None:
    done = run_shell(Command("shell", ".venv/bin/secagg --version", 1), tmp_path)
    assert done.returncode == 0 and "0." in done.stdout, done.stderr


# -- examples the README names, run small ----------------------------------------------------


def _run_example(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_plain_pytorch_example_runs() -> None:
    """``python examples/plain_pytorch.py`` (the quick start's loop), two small rounds."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    done = _run_example(["examples/plain_pytorch.py", "--rounds", "2", "--clients", "20"])
    assert done.returncode == 0, done.stderr
    rounds = [line for line in done.stdout.splitlines() if line.startswith("round")]
    assert len(rounds) == 2 and all("epsilon per client" in line for line in rounds), done.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_opacus_example_runs() -> None:
    """``python examples/opacus_clients.py`` (DP-SGD clients, ``dp="local"``), one small round."""
    pytest.importorskip("opacus")
    done = _run_example(["examples/opacus_clients.py", "--clients", "5", "--rounds", "1"])
    assert done.returncode == 0, done.stderr
    assert "sample-level epsilon" in done.stdout, done.stdout
