"""``secagg bench``: suites installed with the package, verdicts on targets, output paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from secagg.benchmarks import suite_names
from secagg.benchmarks._script import suite_main
from secagg.benchmarks.targets import Target, counts, judge, summary_line, verdict
from secagg.cli import bench, main

REPO = Path(__file__).resolve().parent.parent


def test_the_suites_are_modules_of_the_installed_package() -> None:
    assert suite_names() == ["demo", "dp", "paillier", "primitives", "secagg"]
    assert bench.available_suites() == suite_names()
    module = bench.load_suite("dp")
    assert module.__name__ == "secagg.benchmarks.bench_dp"
    assert Path(module.__file__).parent == Path(bench.__file__).parents[1] / "benchmarks"


def test_packaging_picks_up_the_suites() -> None:
    tomllib = pytest.importorskip("tomllib")
    from setuptools import find_packages

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(where=str(REPO), include=include)
    assert "secagg.benchmarks" in packages
    assert "benchmarks" not in packages  # no top-level package besides the four


def test_suites_import_nothing_from_the_source_tree_scripts() -> None:
    for path in (Path(bench.__file__).parent / "benchmarks").glob("*.py"):
        text = path.read_text()
        assert "from _timing" not in text and "sys.path.insert" not in text, path.name


def test_unknown_suite_lists_the_available_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    available = "available: demo, dp, paillier, primitives, secagg"
    assert f"unknown benchmark suite 'nosuch'; {available}" in err


def test_positional_and_option_must_agree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "dp", "--suite", "secagg"]) == 2
    assert "two suites given" in capsys.readouterr().err


def test_unwritable_json_is_refused_before_the_suite_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[bool] = []

    class Suite:
        @staticmethod
        def run(*, quick: bool = False) -> dict[str, object]:
            ran.append(quick)
            return {"rows": [], "table": ""}

    monkeypatch.setattr(bench, "load_suite", lambda name: Suite)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["bench", "dp", "--json", str(blocker / "dir" / "x.json")]) == 2
    assert ran == []
    err = capsys.readouterr().err
    assert err.startswith("secagg bench: error: cannot write --json ") and err.count("\n") == 1


def test_target_verdicts_and_summary() -> None:
    cheap: dict[str, object] = {}
    judge(cheap, 1.2, Target(1.5, True, "<= 1.5x floor"), "client masking")
    slow: dict[str, object] = {}
    judge(slow, 12.0, Target(20.0, False, ">= 20x faster"), "Flower/ours")
    rows = [cheap, slow, {"what": "no target"}]
    assert [verdict(r) for r in rows] == ["met", "MISSED", "-"]
    assert counts(rows) == (1, 1)
    text = summary_line(rows, quick=True)
    first, *rest = text.splitlines()
    assert first.startswith("targets: 1 of 2 met, 1 MISSED") and "quick sizes" in first
    assert rest == ["  MISSED Flower/ours: 12.0x, target >= 20x faster"]
    assert (
        summary_line([{}], none_note="full run only")
        == "targets: none measured in this run (full run only)"
    )


def test_primitives_quick_run_shows_a_verdict_per_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "not" / "yet" / "primitives.json"
    assert main(["bench", "primitives", "--quick", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    result = json.loads(out.read_text())
    judged = [r for r in result["rows"] if "target_met" in r]
    assert len(judged) == 6 and all(r["target"] == "<= 1.3x floor" for r in judged)
    met = sum(r["target_met"] for r in judged)
    assert result["targets"] == {"met": met, "missed": 6 - met}
    assert "verdict" in table.splitlines()[1]
    prg_lines = [
        line for line in table.splitlines() if line.startswith(("aes-256-ctr", "chacha20"))
    ]
    assert len(prg_lines) == 6 and all(" met " in line or " MISSED " in line for line in prg_lines)
    assert f"targets: {met} of 6 met" in table


def test_demo_suite_judges_the_secure_run_and_counts_the_verifications(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo.json"
    assert main(["bench", "demo", "--quick", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    demo, verify = json.loads(out.read_text())["rows"]
    assert demo["target"] == "<= 4x plain" and isinstance(demo["target_met"], bool)
    assert demo["value"] == pytest.approx(demo["secure_seconds"] / demo["plain_seconds"])
    assert 0 < demo["aggregation_seconds"] < demo["secure_seconds"]
    # a SecAgg+ round of ~50 clients against a malicious server verifies thousands of
    # signatures (keys, attestations, the consistency quorum); all of them are counted
    assert verify["verifications"] > 1_000 * verify["rounds"] / 2
    assert verify["verification_seconds"] == pytest.approx(
        verify["verifications"] * verify["verification_us"] / 1e6
    )
    assert "secure run" in table and ("MISSED" in table or " met " in table)


def test_standalone_script_wrapper_runs_the_packaged_suite() -> None:
    import runpy

    argv = sys.argv
    sys.argv = ["bench_dp.py", "--help"]
    try:
        with pytest.raises(SystemExit) as exc:
            runpy.run_path(str(REPO / "benchmarks" / "bench_dp.py"), run_name="__main__")
    finally:
        sys.argv = argv
    assert exc.value.code == 0


def test_a_suite_script_prints_its_table_and_writes_json_and_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[bool] = []

    def run(*, quick: bool = False) -> dict[str, object]:
        ran.append(quick)
        return {"suite": "toy", "rows": [{"x": float("inf")}], "table": "the table"}

    out, md = tmp_path / "a" / "r.json", tmp_path / "b" / "r.md"
    code = suite_main(
        "Toy suite.\n\nMore.",
        run,
        ["--quick", "--json", str(out), "--markdown", str(md)],
        quick_help="small",
        markdown=lambda result, quick: f"## {result['suite']} quick={quick}\n",
    )
    assert code == 0 and ran == [True]
    assert capsys.readouterr().out == "the table\n"
    document = json.loads(out.read_text())
    assert document["rows"] == [{"x": None}]  # strict JSON: the infinity is listed, not written
    assert md.read_text() == "## toy quick=True\n"


def test_a_suite_script_refuses_an_unwritable_path_before_it_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[bool] = []

    def run(*, quick: bool = False) -> dict[str, object]:
        ran.append(quick)
        return {"table": ""}

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exited:
        suite_main("Toy.", run, ["--json", str(blocker / "dir" / "x.json")], quick_help="small")
    assert exited.value.code == 2 and ran == []
    assert "cannot write --json" in capsys.readouterr().err
    # a suite without a markdown section takes no --markdown
    with pytest.raises(SystemExit):
        suite_main("Toy.", run, ["--markdown", str(tmp_path / "m.md")], quick_help="small")
    assert ran == []
