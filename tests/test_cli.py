from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys

import pytest

from secagg.cli import EXIT_INTERRUPTED, SUBCOMMANDS, main


def test_help_lists_every_subcommand(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


def test_console_script_help_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "secagg", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    assert "bench" in proc.stdout


def test_version_prints_the_package_version(capsys) -> None:  # type: ignore[no-untyped-def]
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"secagg {version('secagg-fl')}"


def test_console_script_version_exits_0() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "secagg", "--version"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("secagg ") and proc.stdout.split()[1][0].isdigit()


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_interrupt_during_a_subcommand_exits_130_without_traceback(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module(SUBCOMMANDS[command][0])

    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "run", interrupted)
    assert main([command]) == EXIT_INTERRUPTED == 130
    captured = capsys.readouterr()
    assert captured.err == "secagg: interrupted\n"
    assert "Traceback" not in captured.out


def test_audit_quiet_without_json_is_refused(capsys) -> None:  # type: ignore[no-untyped-def]
    args = ["audit", "--noise-multiplier", "1", "--sampling-rate", "1", "--rounds", "1"]
    assert main([*args, "--delta", "1e-5", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("secagg audit: error: ") and captured.err.count("\n") == 1
    assert "--quiet without --json PATH" in captured.err


def test_audit_quiet_with_json_writes_the_result(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "audit.json"
    args = ["audit", "--noise-multiplier", "1", "--sampling-rate", "1", "--rounds", "1"]
    assert main([*args, "--delta", "1e-5", "--quiet", "--json", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert json.loads(out.read_text())["curve"]


AUDIT_PARAMETERS = [
    "audit",
    "--noise-multiplier",
    "1",
    "--sampling-rate",
    "0.01",
    "--rounds",
    "10",
    "--delta",
    "1e-5",
]


def test_audit_creates_the_missing_parent_of_json_and_plot(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out, plot = tmp_path / "new" / "dir" / "x.json", tmp_path / "other" / "eps.png"
    assert main([*AUDIT_PARAMETERS, "--json", str(out), "--plot", str(plot)]) == 0
    assert json.loads(out.read_text())["rounds"] == 10
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_audit_refuses_an_unwritable_output_before_accounting(  # type: ignore[no-untyped-def]
    option: str, tmp_path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import secagg.cli.audit

    def must_not_run(*args: object, **kwargs: object) -> object:
        raise AssertionError("the accounting ran before the output path was checked")

    monkeypatch.setattr(secagg.cli.audit, "parameter_curve", must_not_run)
    blocker = tmp_path / "file"
    blocker.write_text("")
    target = blocker / "dir" / "x.json"
    assert main([*AUDIT_PARAMETERS, option, str(target)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert f"cannot write {option} {target}: {blocker} is a file, not a directory" in captured.err


def test_evaluate_refuses_an_unwritable_output_before_the_matrix(  # type: ignore[no-untyped-def]
    tmp_path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import secagg.cli.evaluate

    def must_not_run(*args: object, **kwargs: object) -> object:
        raise AssertionError("the evaluation ran before the output path was checked")

    monkeypatch.setattr(secagg.cli.evaluate, "run_evaluation", must_not_run)
    blocker = tmp_path / "file"
    blocker.write_text("")
    for option in ("--json", "--out"):
        assert main(["evaluate", "--quick", option, str(blocker / "sub")]) == 2
        err = capsys.readouterr().err
        assert (
            err.startswith(f"secagg evaluate: error: cannot write {option} ")
            and err.count("\n") == 1
        )
