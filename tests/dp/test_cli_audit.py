"""``secagg audit`` from parameters and from a saved ledger."""

from __future__ import annotations

import json
import subprocess
import sys

import dp_accounting
import pytest
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from dp.ledger import (
    BudgetScope,
    ClientSampling,
    LocalDpSgd,
    PrivacyBudget,
    PrivacyLedger,
    RoundRecord,
)
from secagg.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _pld(event: dp_accounting.DpEvent, delta: float) -> float:
    acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    acc.compose(event)
    return float(acc.get_epsilon(delta))


def test_parameters_mode_json_and_plot(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out, png = tmp_path / "audit.json", tmp_path / "eps.png"
    code = main(
        [
            "audit",
            *(
                "--noise-multiplier",
                "2.0",
                "--sampling-rate",
                "0.2",
                "--rounds",
                "40",
                "--delta",
                "1e-5",
            ),
            *("--points", "4", "--json", str(out), "--plot", str(png)),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["accountant"] == "pld" and result["delta"] == 1e-5
    step = dp_accounting.PoissonSampledDpEvent(0.2, dp_accounting.GaussianDpEvent(2.0))
    assert result["epsilon"] == pytest.approx(
        _pld(dp_accounting.SelfComposedDpEvent(step, 40), 1e-5), rel=1e-12
    )
    rounds = [t for t, _ in result["curve"]]
    assert rounds == [1, 14, 27, 40]
    assert result["curve"][1][1] == pytest.approx(
        _pld(dp_accounting.SelfComposedDpEvent(step, 14), 1e-5), rel=1e-12
    )
    assert result["curve"][-1][1] == result["epsilon"]
    assert png.read_bytes()[:8] == PNG_MAGIC
    table = capsys.readouterr().out
    assert "epsilon" in table and f"{result['epsilon']:.4f}" in table


def test_full_participation_with_the_rdp_accountant(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "audit.json"
    args = [
        "audit",
        "--noise-multiplier",
        "3",
        "--sampling-rate",
        "1",
        "--rounds",
        "25",
        "--delta",
        "1e-6",
    ]
    assert main([*args, "--accountant", "rdp", "--points", "0", "--quiet", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    ref = rdp_privacy_accountant.RdpAccountant()
    ref.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(3.0), 25))
    assert result["accountant"] == "rdp" and len(result["curve"]) == 25
    assert result["epsilon"] == pytest.approx(ref.get_epsilon(1e-6), rel=1e-9)


def test_ledger_mode(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ledger = PrivacyLedger(
        budgets=[PrivacyBudget(8.0, 1e-5), PrivacyBudget(20.0, 1e-5, BudgetScope.PER_CLIENT)],
    )
    for cohort in (("a", "b"), ("a",), ("c",)):
        ledger.spend(
            RoundRecord(
                dp_accounting.GaussianDpEvent(2.0),
                ClientSampling.from_counts(2, 10),
                participants=cohort,
                local_dp_sgd={"a": (LocalDpSgd(1.0, 0.1, 10),)},
            )
        )
    path, out, png = tmp_path / "ledger.json", tmp_path / "audit.json", tmp_path / "eps.png"
    ledger.save(path)
    assert main(["audit", str(path), "--json", str(out), "--plot", str(png)]) == 0
    result = json.loads(out.read_text())
    assert result["mode"] == "ledger" and result["delta"] == 1e-5 and result["accountant"] == "pld"
    assert result["epsilon"] == pytest.approx(ledger.population_epsilon(1e-5), rel=1e-12)
    assert [t for t, _ in result["curve"]] == [1, 2, 3]
    assert result["per_client"]["worst_client"] == "a"
    assert result["per_client"]["max_epsilon"] == pytest.approx(ledger.client_epsilons(1e-5)["a"])
    assert result["sample_level"]["clients"] == 1
    assert [b["scope"] for b in result["budgets"]] == ["population", "per_client"]
    assert not any(b["exceeded"] for b in result["budgets"])
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert "budget population" in capsys.readouterr().out


def test_errors_are_reported(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["audit", "--noise-multiplier", "1.0", "--delta", "1e-5"]) == 1
    assert "missing --sampling-rate, --rounds" in capsys.readouterr().err
    assert (
        main(["audit", "--noise-multiplier", "1", "--sampling-rate", "0.1", "--rounds", "3"]) == 1
    )
    assert "--delta" in capsys.readouterr().err
    args = ["--noise-multiplier", "1", "--sampling-rate", "1.5", "--rounds", "3", "--delta", "1e-5"]
    assert main(["audit", *args]) == 1
    missing = tmp_path / "nope.json"
    assert main(["audit", str(missing), "--delta", "1e-5"]) == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "secagg-fl/privacy-ledger", "version": 99, "rounds": []}))
    assert main(["audit", str(bad), "--delta", "1e-5"]) == 1
    assert "version" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["audit", "--accountant", "moments"])


def test_console_script(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "audit.json"
    cmd = [
        sys.executable,
        "-m",
        "secagg",
        "audit",
        "--noise-multiplier",
        "4",
        "--sampling-rate",
        "1",
    ]
    cmd += ["--rounds", "10", "--delta", "1e-5", "--points", "2", "--quiet", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result) >= {"epsilon", "delta", "accountant", "curve"}
    assert result["curve"][-1] == [10, result["epsilon"]]
