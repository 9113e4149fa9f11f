"""The core install: ``pip install secagg-fl`` without extras.

The slow test builds a fresh virtual environment, installs the repository with its core
dependencies only and checks, in that environment, that torch, Opacus, scikit-learn,
matplotlib and Flower are absent, that a real secure aggregation round runs (SecAgg+ in
``protocols.simulate``, the recipe with distributed DP and with Paillier), and that every
feature needing an extra says which one -- as an exception on import, and as one line with
exit status 2 from the ``secagg`` command. It needs PyPI (or the configured index) for the
core dependencies and is skipped only when PyPI cannot be reached.

The fast tests check the helpers behind those messages and that ``pyproject.toml`` and
:data:`secagg.errors.EXTRA_MODULES` agree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from secagg.errors import (
    EXTRA_MODULES,
    MissingExtraError,
    SecAggError,
    raise_missing_extra,
    require_extra,
    require_installed,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Top-level modules that the core install must not bring in.
HEAVY_MODULES = ("torch", "opacus", "sklearn", "matplotlib", "flwr")

#: Modules that need an extra -> the extra their error must name.
GUARDED_MODULES: dict[str, str | None] = {
    "dp.opacus_client": "torch",
    # the protocol attacks drive the real state machines and need no extra
    "threat_models.attacks": None,
    "threat_models.attacks.lying_server": None,
    "threat_models.attacks.protocol_level": None,
    "threat_models.attacks.gradient_inversion": "eval",
    "threat_models.attacks.model_level": "eval",
    "threat_models.data": "eval",
    "threat_models.evaluation": "eval",
    "threat_models.evaluation.report": "eval",
    "secagg.demo": "eval",
}

#: What the build needs from the repository (a copy is built, so that the build leaves
#: nothing behind in the working tree).
_SOURCE_IGNORE = shutil.ignore_patterns(
    "__pycache__",
    "*.pyc",
    "*.egg-info",
    "build",
    "dist",
    ".venv",
    ".git",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "out",
)
_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "secagg", "dp", "protocols", "threat_models")


# -- fast: the helpers and the declared extras -----------------------------------------


def test_raise_missing_extra_names_the_extra_for_its_modules() -> None:
    cause = ImportError("No module named 'torch'", name="torch.nn")
    with pytest.raises(MissingExtraError) as info:
        raise_missing_extra(cause, "eval", "threat_models.evaluation")
    err = info.value
    assert (err.extra, err.module, err.feature) == ("eval", "torch", "threat_models.evaluation")
    assert isinstance(err, ImportError) and isinstance(err, SecAggError)
    assert err.__cause__ is cause
    assert "pip install 'secagg-fl[eval]'" in str(err)


def test_raise_missing_extra_reraises_what_no_extra_provides() -> None:
    # A module the extra does not install (a broken install, a typo) keeps its own error.
    cause = ImportError("No module named 'numpy_helpers'", name="numpy_helpers")
    with pytest.raises(ImportError) as info:
        raise_missing_extra(cause, "torch", "dp.opacus_client")
    assert info.value is cause
    # matplotlib is the plot extra's, not the torch extra's
    cause = ImportError("No module named 'matplotlib'", name="matplotlib")
    with pytest.raises(ImportError) as info:
        raise_missing_extra(cause, "torch", "dp.opacus_client")
    assert not isinstance(info.value, MissingExtraError)


def test_require_installed_finds_without_importing() -> None:
    require_installed(("numpy", "scipy.special"), "plot", "a feature")
    with pytest.raises(MissingExtraError) as info:
        require_installed(("numpy", "secagg_no_such_module_x.sub"), "plot", "a feature")
    assert (info.value.extra, info.value.module) == ("plot", "secagg_no_such_module_x")


def test_require_extra_imports_or_names_the_extra() -> None:
    assert require_extra("json", "plot", "a feature") is json
    with pytest.raises(MissingExtraError) as info:
        require_extra("secagg_no_such_module_y", "flower", "a feature")
    assert info.value.extra == "flower"


def _pyproject() -> dict[str, object]:
    tomllib = pytest.importorskip("tomllib")
    data: dict[str, object] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return data


def _names(requirements: list[str]) -> set[str]:
    names = set()
    for req in requirements:
        name = req
        for sep in "[<>=!~; ":
            name = name.split(sep)[0]
        names.add(name.lower())
    return names


def test_pyproject_extras_match_the_guards() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    core = _names(project["dependencies"])
    assert core == {"numpy", "scipy", "cryptography", "phe", "gmpy2", "dp-accounting", "tqdm"}
    extras: dict[str, list[str]] = project["optional-dependencies"]
    distribution = {
        "torch": "torch",
        "opacus": "opacus",
        "sklearn": "scikit-learn",
        "matplotlib": "matplotlib",
        "mlxtend": "mlxtend",
        "threadpoolctl": "threadpoolctl",
        "flwr": "flwr",
    }
    for extra, modules in EXTRA_MODULES.items():
        assert _names(extras[extra]) == {distribution[m] for m in modules}, extra
    runtime = set(extras) - {"dev", "all"}
    assert runtime == set(EXTRA_MODULES)
    (everything,) = extras["all"]
    name, _, listed = everything.rstrip("]").partition("[")
    assert name == "secagg-fl" and set(listed.split(",")) == runtime


# -- slow: a real core install ---------------------------------------------------------


@dataclass(frozen=True)
class CoreVenv:
    python: Path
    secagg: Path
    install_seconds: float
    size: str


def _pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=15) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _clean_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    }
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _du(path: Path) -> str:
    du = shutil.which("du")
    if du is not None:
        done = subprocess.run([du, "-sh", str(path)], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return done.stdout.split()[0]
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return f"{total / 2**20:.0f}M"


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> CoreVenv:
    root = tmp_path_factory.mktemp("core-install")
    source = root / "secagg-fl"
    source.mkdir()
    for name in _SOURCES:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=_SOURCE_IGNORE)
        else:
            shutil.copy2(src, source / name)
    venv = root / "venv"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=_clean_env())
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(source)],
        capture_output=True,
        text=True,
        check=False,
        env=_clean_env(),
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        if not _pypi_reachable():
            pytest.skip("PyPI is unreachable: cannot install the core dependencies")
        pytest.fail(f"pip install of the core failed:\n{done.stdout}\n{done.stderr}")
    size = _du(venv)
    print(f"\ncore install: {seconds:.0f} s (venv and pip install), venv size {size}")
    return CoreVenv(python, venv / "bin" / "secagg", seconds, size)


def _run_json(venv: CoreVenv, tmp_path: Path, script: str) -> dict[str, object]:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    done = subprocess.run(
        [str(venv.python), str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=_clean_env(),
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_core_install_has_no_heavy_dependencies(
    core_venv: CoreVenv, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    record_property("core_install_seconds", round(core_venv.install_seconds, 1))
    record_property("core_venv_size", core_venv.size)
    found = _run_json(
        core_venv,
        tmp_path,
        f"""
        import importlib.util, json
        print(json.dumps({{m: importlib.util.find_spec(m) is not None for m in {HEAVY_MODULES!r}}}))
    """,
    )
    assert found == dict.fromkeys(HEAVY_MODULES, False)
    where = _run_json(
        core_venv,
        tmp_path,
        """
        import json, secagg
        print(json.dumps({"file": secagg.__file__}))
    """,
    )
    # the installed package, not the working tree
    assert not str(where["file"]).startswith(str(REPO_ROOT))


@pytest.mark.slow
def test_core_install_runs_secure_aggregation(core_venv: CoreVenv, tmp_path: Path) -> None:
    out = _run_json(
        core_venv,
        tmp_path,
        """
        import json

        import numpy as np

        import protocols
        import threat_models
        from secagg import SecureAggregator

        rng = np.random.default_rng(7)
        out = {}

        # SecAgg+ (parameters from the default threat model), one client gone before masking
        updates = {cid: rng.uniform(-1.0, 1.0, size=64) for cid in range(8)}
        sim = protocols.simulate(updates, protocol="secagg+", dropouts={"masked_input": [3]},
        seed=1)
        plain = sum(updates[c] for c in sim.survivors)
        out["survivors"] = list(sim.survivors)
        out["simulate_error"] = float(np.max(np.abs(sim.aggregate - plain)))
        out["degree"] = int(threat_models.secagg_plus_parameters(8,
        threat_models.ThreatModel()).degree)

        # the recipe: SecAgg+ with distributed discrete-Gaussian noise
        n, d, z, clip = 20, 32, 0.5, 1.0
        agg = SecureAggregator(population=n, noise_multiplier=z, clip_norm=clip, verify=True)
        direction = rng.normal(size=d)
        direction *= 0.8 / np.linalg.norm(direction)
        client_updates = {cid: direction + rng.normal(scale=0.01, size=d) for cid in range(n)}
        plain_mean = sum(client_updates.values()) / n
        mean = np.asarray(agg.mean(client_updates))
        report = agg.last_round
        out["dp_error_norm"] = float(np.linalg.norm(mean - plain_mean))
        out["dp_plain_norm"] = float(np.linalg.norm(plain_mean))
        out["dp_noise_stddev"] = float(report.noise_stddev)
        out["dp_verify_difference"] = float(report.max_abs_difference)
        out["dp_clipped"] = int(report.clipped)
        out["epsilon"] = float(agg.epsilon)

        # the recipe with threshold Paillier (a short key: a test, not a deployment)
        paillier_updates = {cid: rng.uniform(-1.0, 1.0, size=16) for cid in range(6)}
        pagg = SecureAggregator(population=6, protocol="paillier", dp="none",
                                hazmat_paillier_key_bits=1024)
        total = np.asarray(pagg.sum(paillier_updates))
        out["paillier_error"] = float(np.max(np.abs(total - sum(paillier_updates.values()))))
        print(json.dumps(out))
    """,
    )
    assert out["survivors"] == [0, 1, 2, 4, 5, 6, 7]
    assert out["simulate_error"] < 1e-6
    assert 2 <= out["degree"] <= 7
    assert out["dp_verify_difference"] < 1e-9  # the secure sum is the plaintext sum of the inputs
    assert out["dp_clipped"] == 0
    # the DP mean is the plaintext mean up to the noise: sigma * clip per coordinate of the
    # sum, divided by n for the mean; 4 standard deviations of the norm of a d-dim Gaussian
    sigma_mean = 0.5 * 1.0 / 20
    assert out["dp_noise_stddev"] == pytest.approx(0.5)
    assert out["dp_error_norm"] < 4 * sigma_mean * 32**0.5
    assert out["dp_plain_norm"] == pytest.approx(0.8, abs=0.05)
    assert 0.0 < out["epsilon"] < float("inf")
    assert out["paillier_error"] < 1e-6


@pytest.mark.slow
def test_core_install_names_the_missing_extra(core_venv: CoreVenv, tmp_path: Path) -> None:
    out = _run_json(
        core_venv,
        tmp_path,
        f"""
        import importlib, json
        from secagg.errors import MissingExtraError

        out = {{}}
        for name in {sorted(GUARDED_MODULES)!r}:
            try:
                importlib.import_module(name)
            except MissingExtraError as exc:
                out[name] = exc.extra
            except ImportError as exc:
                out[name] = "ImportError: " + str(exc)
            else:
                out[name] = None
        import dp
        try:
            dp.train_private_round
        except MissingExtraError as exc:
            out["dp.train_private_round"] = exc.extra
        from dp.accounting import make_accountant
        from dp_accounting import GaussianDpEvent
        accountant = make_accountant("prv")
        accountant.compose(GaussianDpEvent(1.0), 10)
        try:
            accountant.get_epsilon(1e-5)
        except MissingExtraError as exc:
            out["prv"] = exc.extra
        print(json.dumps(out))
    """,
    )
    expected = dict(GUARDED_MODULES)
    expected.update({"dp.train_private_round": "torch", "prv": "torch"})
    assert out == expected


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["demo"], "eval"),
        (["evaluate", "--quick"], "eval"),
        (
            [
                "audit",
                "--noise-multiplier",
                "1.0",
                "--sampling-rate",
                "0.1",
                "--rounds",
                "10",
                "--delta",
                "1e-5",
                "--plot",
                "eps.png",
            ],
            "plot",
        ),
    ],
)
def test_core_install_cli_names_the_missing_extra(
    core_venv: CoreVenv, tmp_path: Path, argv: list[str], extra: str
) -> None:
    done = subprocess.run(
        [str(core_venv.secagg), *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=_clean_env(),
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"pip install 'secagg-fl[{extra}]'" in lines[0]
    assert lines[0].startswith(f"secagg {argv[0]}: error:")
    assert not (tmp_path / "eps.png").exists()


@pytest.mark.slow
def test_core_install_cli_core_commands_run(core_venv: CoreVenv, tmp_path: Path) -> None:
    version = subprocess.run(
        [str(core_venv.secagg), "--version"],
        capture_output=True,
        text=True,
        check=False,
        env=_clean_env(),
    )
    assert version.returncode == 0 and "0.1.0" in version.stdout
    audit = subprocess.run(
        [
            str(core_venv.secagg),
            "audit",
            "--noise-multiplier",
            "1.0",
            "--sampling-rate",
            "0.1",
            "--rounds",
            "10",
            "--delta",
            "1e-5",
            "--json",
            "audit.json",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=_clean_env(),
    )
    assert audit.returncode == 0, audit.stderr
    result = json.loads((tmp_path / "audit.json").read_text())
    assert isinstance(result, dict) and result
