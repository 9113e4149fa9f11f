"""Output paths are checked (and missing parents created) before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from secagg.errors import InvalidParameterError
from secagg.outputs import prepare_output_dir, prepare_output_file


def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "result.json"
    assert prepare_output_file(target, "--json") == target
    assert target.parent.is_dir() and not target.exists()


def test_a_file_in_the_way_is_refused_naming_the_option_and_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidParameterError) as exc:
        prepare_output_file(blocker / "sub" / "result.json", "--plot")
    message = str(exc.value)
    assert message.startswith(f"cannot write --plot {blocker / 'sub' / 'result.json'}")
    assert f"{blocker} is a file, not a directory" in message
    assert not (blocker / "sub").exists()


def test_an_existing_directory_is_not_an_output_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="it is a directory"):
        prepare_output_file(tmp_path, "--json")


def test_a_bare_file_name_goes_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert prepare_output_file("out.json", "--json") == Path("out.json")


def test_output_directories_are_created_and_files_refused(tmp_path: Path) -> None:
    assert prepare_output_dir(tmp_path / "a" / "b", "--out").is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidParameterError, match="it is a file, not a directory"):
        prepare_output_dir(tmp_path / "f", "--out")
