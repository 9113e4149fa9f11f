from __future__ import annotations

import subprocess
import sys

from secagg.cli import SUBCOMMANDS, main


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
