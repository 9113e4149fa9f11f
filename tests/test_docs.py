"""The API reference has something to say about every public name, and the parameters page
agrees with the code it quotes.

``.ci/docs`` builds the reference with pdoc; these checks use pdoc's own reading of the
docstrings (a dataclass's generated signature or an inherited docstring does not count),
so that a public name without documentation fails here rather than rendering empty.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pdoc_doc = pytest.importorskip("pdoc.doc")

from threat_models import ServerClass, ThreatModel, secagg_plus_parameters  # noqa: E402
from threat_models.paillier import paillier_parameters  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("secagg", "dp", "protocols", "threat_models")
PARAMETERS = ROOT / "threat_models" / "PARAMETERS.md"


def package(name: str) -> ModuleType:
    """The package with every lazily exported name bound, as ``.ci/docs`` documents it."""
    module = importlib.import_module(name)
    for exported in module.__all__:
        if exported not in module.__dict__:
            setattr(module, exported, getattr(module, exported))
    return module


def imported_from(module: ModuleType, name: str) -> str | None:
    """The module a package's ``from M import name`` takes ``name`` from, if any."""
    tree = ast.parse(Path(str(module.__file__)).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and any(a.name == name for a in node.names)
        ):
            return node.module
    return None


def docstring(module: ModuleType, name: str) -> str:
    """The docstring pdoc renders for ``module.name``; a re-exported constant (whose value
    cannot say where it was defined) is documented in the module it is imported from."""
    doc = pdoc_doc.Module(module).get(name)
    text = doc.docstring.strip() if doc is not None else ""
    if not text and isinstance(doc, pdoc_doc.Variable) and (source := imported_from(module, name)):
        origin = pdoc_doc.Module(importlib.import_module(source)).get(name)
        text = origin.docstring.strip() if origin is not None else ""
    return text


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_has_a_docstring(name: str) -> None:
    module = package(name)
    missing = [exported for exported in module.__all__ if not docstring(module, exported)]
    assert not missing, f"{name}.__all__ names without a docstring: {missing}"


@pytest.mark.parametrize("name", PACKAGES)
def test_every_module_has_a_docstring(name: str) -> None:
    root = importlib.import_module(name)
    missing = []
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{name}."):
        if info.name.endswith(".__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue  # a module of an extra not installed here; .ci/docs imports them all
        if not (module.__doc__ or "").strip():
            missing.append(info.name)
    assert not missing, f"modules without a docstring: {missing}"


def test_a_dataclass_without_a_docstring_counts_as_undocumented() -> None:
    from dataclasses import dataclass

    @dataclass
    class Bare:
        x: int

    doc = pdoc_doc.Class(__name__, "Bare", Bare, (__name__, "Bare"))
    assert Bare.__doc__ and not doc.docstring.strip()


def test_the_parameters_page_is_part_of_the_threat_models_reference() -> None:
    import threat_models

    assert ".. include:: ./PARAMETERS.md" in (threat_models.__doc__ or "")
    assert PARAMETERS.is_file()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "threat_models/PARAMETERS.md" in readme


# -- the parameters page quotes the code -----------------------------------------------------

#: the columns of the page's degree table, in order
COLUMNS = (
    ThreatModel(),
    ThreatModel(server=ServerClass.SEMI_MALICIOUS),
    ThreatModel(server=ServerClass.CURIOUS),
    ThreatModel(colluding_fraction=0.2),
    ThreatModel(dropout_fraction=0.3),
)


def degree_table() -> dict[int, list[str]]:
    text = PARAMETERS.read_text(encoding="utf-8")
    header = "| n | `ThreatModel()` | `SEMI_MALICIOUS` | `CURIOUS` |"
    start = text.index(header)
    rows: dict[int, list[str]] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[int(cells[0])] = cells[1:]
    return rows


def expected_cell(n: int, tm: ThreatModel) -> str:
    from secagg.errors import InfeasibleThreatModelError

    try:
        p = secagg_plus_parameters(n, tm)
    except InfeasibleThreatModelError:
        return "infeasible"
    figures = [p.degree, p.threshold]
    if tm.server is not ServerClass.CURIOUS:
        figures.append(p.consistency_quorum)
    cell = ", ".join(str(f) for f in figures)
    return f"{cell} (complete)" if p.graph.value == "complete" else cell


def test_the_degree_table_is_what_parameter_selection_gives() -> None:
    rows = degree_table()
    assert len(rows) >= 5
    wrong = [
        (n, column, cell, expected_cell(n, tm))
        for n, cells in rows.items()
        for column, (cell, tm) in enumerate(zip(cells, COLUMNS))
        if cell != expected_cell(n, tm)
    ]
    assert not wrong, f"PARAMETERS.md (n, column, page, code): {wrong}"


def test_the_committee_thresholds_are_what_paillier_parameters_gives() -> None:
    text = PARAMETERS.read_text(encoding="utf-8")
    quoted = {int(size): int(t) for size, t in re.findall(r"`l = (\d+)` gives `t = (\d+)`", text)}
    assert set(quoted) == {5, 10, 20}
    for committee, threshold in quoted.items():
        assert (
            paillier_parameters(100, ThreatModel(), n_decryptors=committee).threshold == threshold
        )


def test_the_python_blocks_of_the_parameters_page_run(tmp_path: Path) -> None:
    blocks = re.findall(
        r"^```python\n(.*?)^```", PARAMETERS.read_text(encoding="utf-8"), flags=re.M | re.S
    )
    assert blocks
    for block in blocks:
        script = tmp_path / "block.py"
        script.write_text(block, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{block}\n{done.stderr}"
        assert done.stdout.strip()
