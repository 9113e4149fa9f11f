"""The supported Flower range: the check on import, the missing-extra error, the pinned extra."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("flwr")

import flwr  # noqa: E402

from protocols.flower import FLWR_SUPPORTED, FLWR_VERSION  # noqa: E402
from protocols.flower.compat import (  # noqa: E402
    UnsupportedFlowerVersionWarning,
    check_flower_version,
    flower_version_supported,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("version", "supported"),
    [
        ("1.41.0", True),
        ("1.42.0", True),
        ("1.42.7", True),
        ("1.40.9", False),
        ("1.43.0", False),
        ("1.43.0rc1", False),
        ("2.0.0", False),
        ("0.19.0", False),
        ("not a version", False),
    ],
)
def test_supported_range(version: str, supported: bool) -> None:
    assert flower_version_supported(version) is supported


def test_installed_flower_is_supported() -> None:
    assert FLWR_VERSION == flwr.__version__
    assert flower_version_supported(FLWR_VERSION)


def test_an_unsupported_release_warns_naming_the_range() -> None:
    with pytest.warns(UnsupportedFlowerVersionWarning, match=r"flwr 1\.43\.0 .*>=1\.41,<1\.43"):
        assert check_flower_version("1.43.0") is False


def test_the_flower_extra_pins_the_supported_range() -> None:
    # (tomllib is 3.11+; the extra is one line of [project.optional-dependencies])
    extra = re.search(r"^flower = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert extra is not None
    assert extra.group(1) == f'"flwr[simulation]{FLWR_SUPPORTED}"'


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_without_flower_names_the_extra() -> None:
    done = _python(
        "import sys\n"
        "sys.modules['flwr'] = None  # as if Flower were not installed\n"
        "from secagg.errors import MissingExtraError\n"
        "try:\n"
        "    import protocols.flower\n"
        "except MissingExtraError as exc:\n"
        "    print(exc.module, exc.extra, exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("flwr flower "), done.stdout
    assert "pip install 'secagg-fl[flower]'" in done.stdout


def test_import_with_an_unsupported_flower_warns() -> None:
    done = _python(
        "import warnings\n"
        "import flwr\n"
        "flwr.__version__ = '1.43.0'\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import protocols.flower\n"
        "print([type(w.message).__name__ for w in caught\n"
        "       if 'protocols.flower supports' in str(w.message)])\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['UnsupportedFlowerVersionWarning']", done.stdout
