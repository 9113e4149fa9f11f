"""No ``Any`` in a public signature, so that ``mypy --strict`` clean says something.

Public means: a function or class named in its module's ``__all__``, the parameters and
return type of its functions and public methods (``__init__`` included), and the
annotated attributes of its classes. A JSON record (``dict[str, Any]`` /
``Mapping[str, Any]``: a value of ``json.loads``) is the one place ``Any`` truly means any
value, and is allowed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("secagg", "dp", "protocols", "threat_models")
JSON_RECORD = re.compile(r"(dict|Mapping|MutableMapping)\[str, Any\]")


def _exported(tree: ast.Module) -> set[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            try:
                return set(ast.literal_eval(node.value))
            except ValueError:
                return None
    return None


def _mentions_any(annotation: ast.expr) -> bool:
    text = JSON_RECORD.sub("JSONRecord", ast.unparse(annotation))
    return re.search(r"\bAny\b", text) is not None


def _function_problems(fn: ast.FunctionDef | ast.AsyncFunctionDef, where: str) -> list[str]:
    args = fn.args
    annotated = [a for a in (*args.posonlyargs, *args.args, *args.kwonlyargs) if a.annotation]
    for extra in (args.vararg, args.kwarg):
        if extra is not None and extra.annotation is not None:
            annotated.append(extra)
    out = [
        f"{where}({a.arg}: {ast.unparse(a.annotation)})"
        for a in annotated
        if a.annotation is not None and _mentions_any(a.annotation)
    ]
    if fn.returns is not None and _mentions_any(fn.returns):
        out.append(f"{where} -> {ast.unparse(fn.returns)}")
    return out


def public_any(path: Path) -> list[str]:
    """Every use of ``Any`` in the public signatures of one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    exported = _exported(tree)
    rel = path.relative_to(ROOT)
    out: list[str] = []
    for node in tree.body:
        public = not node.name.startswith("_") if hasattr(node, "name") else False
        if not public or (exported is not None and node.name not in exported):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out += _function_problems(node, f"{rel}:{node.lineno} {node.name}")
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                where = f"{rel}:{item.lineno} {node.name}"
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    not item.name.startswith("_") or item.name == "__init__"
                ):
                    out += _function_problems(item, f"{where}.{item.name}")
                elif (
                    isinstance(item, ast.AnnAssign)
                    and isinstance(item.target, ast.Name)
                    and not item.target.id.startswith("_")
                    and _mentions_any(item.annotation)
                ):
                    out.append(f"{where}.{item.target.id}: {ast.unparse(item.annotation)}")
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_no_any_in_public_signatures(package: str) -> None:
    problems = [p for path in sorted((ROOT / package).rglob("*.py")) for p in public_any(path)]
    assert problems == [], "\n".join(problems)


def test_the_check_sees_any_and_allows_json_records(tmp_path: Path) -> None:
    """Positive control: ``Any`` in a parameter, a return and an attribute is reported."""
    probe = ROOT / "tests" / "_public_types_probe.py"
    probe.write_text(
        "from typing import Any\n"
        "__all__ = ['f', 'C', 'g']\n"
        "def f(x: Any) -> int: ...\n"
        "def g(x: int) -> dict[str, Any]: ...\n"
        "def _private(x: Any) -> Any: ...\n"
        "class C:\n"
        "    value: Any\n"
        "    def m(self) -> list[Any]: ...\n"
    )
    try:
        found = public_any(probe)
    finally:
        probe.unlink()
    assert [p.split(" ", 1)[1] for p in found] == [
        "f(x: Any)",
        "C.value: Any",
        "C.m -> list[Any]",
    ]
