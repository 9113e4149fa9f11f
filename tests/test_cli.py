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
