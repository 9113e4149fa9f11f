"""The layers of ``ARCHITECTURE.md``, checked on every import of the library.

Every ``import`` and ``from ... import`` of the four packages is parsed (module level,
inside functions, under ``TYPE_CHECKING``); each module is placed in a layer by the
longest matching prefix of :data:`LAYERS`. The checks:

* an import never points to a higher layer;
* the module import graph has no cycle (a package ``__init__`` that re-exports counts as a
  module, so a submodule importing its own package root is a cycle);
* a first-party import inside a function is allowed only to reach a module that needs an
  optional extra (it imports torch, opacus, flwr, matplotlib or scikit-learn, itself or
  through the modules it imports), or in a package's PEP 562 ``__getattr__``;
* no library file is over 800 lines.

A positive control runs the same checks on a small synthetic package that breaks each rule.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("secagg", "dp", "protocols", "threat_models")
EXTRAS = frozenset({"torch", "opacus", "flwr", "matplotlib", "sklearn", "torchvision"})
MAX_LINES = 800

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "secagg.errors",
            "secagg.validation",
            "secagg.outputs",
            "secagg._moved",
            "secagg.primitives",
        ),
    ),
    (
        "privacy and adversary",
        ("dp", "threat_models.model", "threat_models.parameters", "threat_models.paillier"),
    ),
    ("protocols", ("protocols",)),
    (
        "attacks and evaluation",
        (
            "threat_models",
            "threat_models.attacks",
            "threat_models.data",
            "threat_models.evaluation",
        ),
    ),
    ("recipe and adapters", ("secagg.recipe", "protocols.flower")),
    (
        "applications",
        ("secagg", "secagg.cli", "secagg.demo", "secagg.benchmarks", "secagg.__main__"),
    ),
)
"""Layer name and the module prefixes it holds, bottom first."""


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    in_function: str | None  # the enclosing function's name, or None at module level


def layer_of(module: str, layers: Iterable[tuple[str, tuple[str, ...]]] = LAYERS) -> int:
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best < 0:
        raise LookupError(f"{module} is in no layer")
    return best


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in modules:
            return candidate
    return None


def imports_of(
    module: str, path: Path, modules: Mapping[str, Path]
) -> tuple[list[Import], set[str]]:
    """First-party imports of one module, and the top-level third-party names it imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    third_party: set[str] = set()

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = function
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = child.name if function is None else function
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    origin = ".".join(base + ([child.module] if child.module else []))
                else:
                    origin = child.module or ""
                # ``from pkg import sub`` imports the submodule; other names come from pkg
                names = [
                    f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                    for alias in child.names
                ]
            targets = {t for t in (_resolve(n, modules) for n in names) if t and t != module}
            for target in sorted(targets):
                found.append(Import(module, target, child.lineno, function))
            if function is None:
                third_party.update(
                    n.split(".")[0] for n in names if n.split(".")[0] not in PACKAGES
                )
            visit(child, inner)

    visit(tree, None)
    return found, third_party


def analyse(
    root: Path, packages: Iterable[str], layers: tuple[tuple[str, tuple[str, ...]], ...]
) -> dict[str, list[str]]:
    """Every violation of the four rules, by rule."""
    modules = module_files(root, packages)
    edges: dict[str, set[str]] = defaultdict(set)
    eager: dict[str, set[str]] = defaultdict(set)
    extras_direct: dict[str, bool] = {}
    all_imports: list[Import] = []
    for module, path in modules.items():
        found, third = imports_of(module, path, modules)
        extras_direct[module] = bool(third & EXTRAS)
        all_imports.extend(found)
        for imp in found:
            edges[module].add(imp.target)
            if imp.in_function is None:
                eager[module].add(imp.target)

    def needs_extra(module: str, seen: set[str] | None = None) -> bool:
        seen = set() if seen is None else seen
        if module in seen:
            return False
        seen.add(module)
        return extras_direct[module] or any(needs_extra(t, seen) for t in eager[module])

    problems: dict[str, list[str]] = {"upward": [], "cycle": [], "in_function": [], "size": []}
    for imp in all_imports:
        if layer_of(imp.target, layers) > layer_of(imp.source, layers):
            problems["upward"].append(
                f"{imp.source}:{imp.line} imports {imp.target} "
                f"({layers[layer_of(imp.source, layers)][0]} -> "
                f"{layers[layer_of(imp.target, layers)][0]})"
            )
        if imp.in_function is not None:
            lazy_export = (
                imp.in_function == "__getattr__" and modules[imp.source].name == "__init__.py"
            )
            if not lazy_export and not needs_extra(imp.target):
                problems["in_function"].append(
                    f"{imp.source}:{imp.line} imports {imp.target} inside {imp.in_function}()"
                )
    for component in _strongly_connected(modules, edges):
        problems["cycle"].append(" <-> ".join(sorted(component)))
    for path in modules.values():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            problems["size"].append(f"{path.relative_to(root)}: {lines} lines")
    return problems


def _strongly_connected(nodes: Iterable[str], edges: Mapping[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def connect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for node in sorted(nodes):
        if node not in index:
            connect(node)
    return out


@pytest.fixture(scope="module")
def problems() -> dict[str, list[str]]:
    return analyse(ROOT, PACKAGES, LAYERS)


@pytest.mark.parametrize("rule", ["upward", "cycle", "in_function", "size"])
def test_library_keeps_the_layers(problems: dict[str, list[str]], rule: str) -> None:
    assert problems[rule] == [], "\n".join(problems[rule])


def test_every_module_is_in_a_layer() -> None:
    for module in module_files(ROOT, PACKAGES):
        layer_of(module)


def test_the_checks_catch_each_violation(tmp_path: Path) -> None:
    """Positive control: a package that breaks every rule once is reported on every rule."""
    pkg = tmp_path / "toy"
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("")
    (pkg / "low" / "a.py").write_text("from toy.low import b\n")
    (pkg / "low" / "b.py").write_text("from toy.low import a\n")  # cycle a <-> b
    (pkg / "low" / "c.py").write_text("def f():\n    from toy import high\n")  # up, in a function
    (pkg / "low" / "d.py").write_text("def g():\n    import toy.low.a\n")  # lazy, no extra
    (pkg / "low" / "e.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (pkg / "high.py").write_text("import torch\nfrom toy.low import a\n")
    (pkg / "top.py").write_text("def run():\n    import toy.high\n")  # lazy for an extra: fine
    layers = (("low", ("toy.low",)), ("high", ("toy", "toy.high")))
    found = analyse(tmp_path, ("toy",), layers)
    assert any("toy.low.c" in p and "toy.high" in p for p in found["upward"])
    assert found["cycle"] == ["toy.low.a <-> toy.low.b"]
    assert [p.split(":")[0] for p in found["in_function"]] == ["toy.low.d"]
    assert found["size"] == ["toy/low/e.py: 801 lines"]
