"""Every ``--json`` file is strict JSON: a non-finite number is ``null``, named under
``non_finite``.

Each subcommand is run for real; only the number it reports is made non-finite (by
wrapping the function that computes it), since a real run rarely yields one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import secagg.cli.audit
import secagg.cli.bench
import secagg.cli.evaluate
import secagg.demo
from secagg.cli import main
from secagg.outputs import NON_FINITE_KEY, json_text, strict_json
from threat_models.evaluation import EvaluationConfig, EvaluationResult, Family, Row


def _refuse_constant(name: str) -> float:
    raise ValueError(f"non-standard JSON constant {name}")


def _strict_load(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text(), parse_constant=_refuse_constant)
    assert isinstance(document, dict)
    return document


def test_strict_load_refuses_the_constants_python_writes_by_default() -> None:
    with pytest.raises(ValueError, match="Infinity"):
        json.loads(json.dumps({"x": math.inf}), parse_constant=_refuse_constant)


def test_json_text_writes_null_and_names_each_replacement() -> None:
    text = json_text(
        {
            "a": math.inf,
            "b": [1.5, math.nan, (-math.inf,)],
            "c/d": {"e~": np.float32("nan")},
            "n": 3,
            "s": "inf",
        }
    )
    document = json.loads(text, parse_constant=_refuse_constant)
    assert document["a"] is None and document["b"] == [1.5, None, [None]]
    assert document["n"] == 3 and document["s"] == "inf"
    assert document[NON_FINITE_KEY] == {
        "/a": "inf",
        "/b/1": "nan",
        "/b/2/0": "-inf",
        "/c~1d/e~0": "nan",
    }
    assert text.endswith("\n")


def test_json_text_of_finite_numbers_adds_no_note() -> None:
    assert NON_FINITE_KEY not in json.loads(json_text({"x": 1.0, "y": [np.float64(2.0)]}))
    assert strict_json({"x": 1.0}) == ({"x": 1.0}, {})


def test_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = secagg.cli.audit._parameters_mode

    def infinite(args: argparse.Namespace) -> dict[str, Any]:
        return {**real(args), "epsilon": math.inf}

    monkeypatch.setattr(secagg.cli.audit, "_parameters_mode", infinite)
    out = tmp_path / "audit.json"
    args = [
        "audit",
        "--noise-multiplier",
        "2.0",
        "--sampling-rate",
        "0.2",
        "--rounds",
        "3",
        "--points",
        "2",
        "--delta",
        "1e-5",
    ]
    assert main([*args, "--quiet", "--json", str(out)]) == 0
    document = _strict_load(out)
    assert document["epsilon"] is None and document[NON_FINITE_KEY]["/epsilon"] == "inf"


def test_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real: Callable[[str], Any] = secagg.cli.bench.load_suite

    def with_a_nan(name: str) -> Any:
        suite = real(name)

        def run(*, quick: bool) -> dict[str, Any]:
            result = dict(suite.run(quick=quick))
            result["rows"] = [
                *result.get("rows", []),
                {"what": "a ratio of zeros", "ratio": math.nan},
            ]
            return result

        return SimpleNamespace(run=run)

    monkeypatch.setattr(secagg.cli.bench, "load_suite", with_a_nan)
    out = tmp_path / "bench.json"
    assert main(["bench", "primitives", "--quick", "--json", str(out)]) == 0
    document = _strict_load(out)
    last = len(document["rows"]) - 1
    assert document["rows"][last]["ratio"] is None
    assert document[NON_FINITE_KEY] == {f"/rows/{last}/ratio": "nan"}


def test_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = secagg.demo.train_federated

    def unbounded(*args: Any, **kwargs: Any) -> Any:
        result, cohorts = real(*args, **kwargs)
        return dataclasses.replace(result, epsilon=math.inf), cohorts

    monkeypatch.setattr(secagg.demo, "train_federated", unbounded)
    out = tmp_path / "demo.json"
    status = main(
        [
            "demo",
            "--clients",
            "10",
            "--clients-per-round",
            "10",
            "--rounds",
            "1",
            "--dp",
            "none",
            "--no-baseline",
            "--quiet",
            "--json",
            str(out),
        ]
    )
    assert status == 0
    document = _strict_load(out)
    assert document["epsilon_per_client"] is None
    assert document[NON_FINITE_KEY]["/epsilon_per_client"] == "inf"


def test_evaluate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row = Row(
        Family.MEMBERSHIP, "attack", "none", "s", "error", math.inf, -math.inf, "b", True, None
    )

    def evaluation(config: EvaluationConfig, *, progress: bool | None = None) -> EvaluationResult:
        return EvaluationResult(config, (row,), (), (), {"cell": 0.5}, "masking", {})

    monkeypatch.setattr(secagg.cli.evaluate, "run_evaluation", evaluation)
    out = tmp_path / "evaluate.json"
    main(["evaluate", "--quick", "--json", str(out), "--no-progress"])
    document = _strict_load(out)
    assert document["rows"][0]["value"] is None and document["rows"][0]["baseline"] is None
    assert document[NON_FINITE_KEY] == {"/rows/0/value": "inf", "/rows/0/baseline": "-inf"}
    assert row.to_json()[NON_FINITE_KEY] == {"/value": "inf", "/baseline": "-inf"}
