"""``secagg audit`` from parameters and from a saved ledger."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import dp_accounting
import pytest
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from dp.accounting import gaussian_dp_epsilon
from dp.ledger import (
    BudgetScope,
    ClientSampling,
    LocalDpSgd,
    PrivacyBudget,
    PrivacyLedger,
    RoundRecord,
)
from secagg.cli import main
from secagg.cli.audit import AMPLIFICATION_ASSUMPTION, EXIT_REFUSED, PER_CLIENT_HOLDS_AGAINST

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
    assert result["epsilon_amplified"] == pytest.approx(
        _pld(dp_accounting.SelfComposedDpEvent(step, 40), 1e-5), rel=1e-12
    )
    assert result["amplification_assumption"] == (
        "amplified by Poisson sampling at rate 0.2 "
        "(assumes the sample is hidden from the adversary)"
    )
    # against a server that picks the cohort: a client in all 40 rounds, sqrt(40)/2-GDP exactly
    assert result["epsilon_per_client"] == pytest.approx(
        gaussian_dp_epsilon(math.sqrt(40) / 2.0, 1e-5), rel=1e-9
    )
    assert result["epsilon_per_client"] > result["epsilon_amplified"]
    assert result["per_client"]["holds_against"] == PER_CLIENT_HOLDS_AGAINST
    assert "epsilon" not in result  # no figure without its threat model
    assert result["curve_of"] == "epsilon_amplified"
    rounds = [t for t, _ in result["curve"]]
    assert rounds == [1, 14, 27, 40]
    assert result["curve"][1][1] == pytest.approx(
        _pld(dp_accounting.SelfComposedDpEvent(step, 14), 1e-5), rel=1e-12
    )
    assert result["curve"][-1][1] == result["epsilon_amplified"]
    assert png.read_bytes()[:8] == PNG_MAGIC
    table = capsys.readouterr().out
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 100
    figures = {line.split("  ")[0]: line.split() for line in lines if "  " in line}
    assert figures["amplified by sampling"][3] == f"{result['epsilon_amplified']:.4f}"
    assert " ".join(figures["amplified by sampling"][4:]) == "Poisson sampling at rate 0.2"
    assert figures["per-client (worst client)"][3] == f"{result['epsilon_per_client']:.4f}"
    # below the table: which figure holds against whom
    assert f"per-client: the worst client; {PER_CLIENT_HOLDS_AGAINST}." in lines
    assert (
        "amplified: holds only against an adversary who neither chooses nor learns the sample."
    ) in lines


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
    # every client in every round: nothing is amplified, the figure holds against any server
    assert result["epsilon_per_client"] == pytest.approx(ref.get_epsilon(1e-6), rel=1e-9)
    assert result["epsilon_amplified"] is None and result["amplification_assumption"] is None
    assert result["curve_of"] == "epsilon_per_client"


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
    # the headline: the worst client, from the rounds it took part in, no amplification
    clients = ledger.client_epsilons(1e-5)
    worst = getattr(ledger, "worst_client_epsilon", None)
    expected = worst(1e-5) if callable(worst) else max(clients.values())
    assert result["epsilon_per_client"] == pytest.approx(expected, rel=1e-12)
    assert result["epsilon_per_client"] == pytest.approx(clients["a"], rel=1e-12)
    assert result["per_client"]["worst_client"] == "a" and result["per_client"]["clients"] == 3
    assert result["per_client"]["holds_against"] == PER_CLIENT_HOLDS_AGAINST
    # the population figure only with its assumption
    assert result["epsilon_amplified"] == pytest.approx(ledger.population_epsilon(1e-5), rel=1e-12)
    assert result["amplification_assumption"] == AMPLIFICATION_ASSUMPTION
    assert result["epsilon_amplified"] < result["epsilon_per_client"]
    assert "epsilon" not in result and result["curve_of"] == "epsilon_amplified"
    assert [t for t, _ in result["curve"]] == [1, 2, 3]
    assert result["curve"][-1][1] == result["epsilon_amplified"]
    assert result["sample_level"]["clients"] == 1
    assert result["epsilon_sample_level"] == pytest.approx(ledger.sample_level_epsilons(1e-5)["a"])
    assert [b["scope"] for b in result["budgets"]] == ["population", "per_client"]
    assert result["budgets"][0]["holds_against"] == AMPLIFICATION_ASSUMPTION
    assert PER_CLIENT_HOLDS_AGAINST in result["budgets"][1]["holds_against"]
    assert not any(b["exceeded"] for b in result["budgets"])
    assert png.read_bytes()[:8] == PNG_MAGIC
    table = capsys.readouterr().out
    lines = table.splitlines()
    assert max(len(line) for line in lines[1:]) <= 100  # the first names the ledger's path
    per_client = next(line for line in lines if line.startswith("per-client (worst client)"))
    amplified = next(line for line in lines if line.startswith("amplified by sampling"))
    assert per_client.split()[3] == f"{result['epsilon_per_client']:.4f}"
    assert "client a of 3" in per_client
    assert amplified.split()[3] == f"{result['epsilon_amplified']:.4f}"
    explanation = lines[lines.index(amplified) + 1 :]
    assert explanation[0].startswith("sample-level (worst client)")
    assert f"per-client: the worst client; {PER_CLIENT_HOLDS_AGAINST}." in explanation
    assert (
        "amplified: holds only against an adversary who neither chooses nor learns the sample."
        in explanation
    )
    assert any(
        line.startswith("sample-level: one record of a client's local data") for line in explanation
    )
    budget = (
        f"budget population (amplified figure): {result['epsilon_amplified']:.4f} "
        "of 8 at delta 1e-05 [ok]"
    )
    assert budget in lines


def test_ledger_with_an_unknown_cohort_counts_every_round(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ledger = PrivacyLedger()
    sampling = ClientSampling.from_counts(2, 10)
    ledger.spend(RoundRecord(dp_accounting.GaussianDpEvent(2.0), sampling, participants=("a",)))
    ledger.spend(RoundRecord(dp_accounting.GaussianDpEvent(3.0), sampling, participants=None))
    path, out = tmp_path / "ledger.json", tmp_path / "audit.json"
    ledger.save(path)
    assert main(["audit", str(path), "--delta", "1e-5", "--quiet", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    every_round = _pld(
        dp_accounting.ComposedDpEvent(
            [dp_accounting.GaussianDpEvent(2.0), dp_accounting.GaussianDpEvent(3.0)]
        ),
        1e-5,
    )
    if not callable(getattr(ledger, "worst_client_epsilon", None)):
        assert result["epsilon_per_client"] == pytest.approx(every_round, rel=1e-9)
    assert result["epsilon_per_client"] > ledger.client_epsilons(1e-5)["a"]
    assert result["per_client"]["worst_client"] is None
    assert "every round" in result["per_client"]["basis"]


def _refused(capsys, args: list[str]) -> str:  # type: ignore[no-untyped-def]
    assert main(["audit", *args]) == EXIT_REFUSED
    err: str = capsys.readouterr().err
    assert err.startswith("secagg audit: error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (("--rounds", "0"), "--rounds must be at least 1"),
        (("--sampling-rate", "1.5"), "--sampling-rate must lie in (0, 1]"),
        (("--sampling-rate", "0"), "--sampling-rate must lie in (0, 1]"),
        (("--noise-multiplier", "0"), "--noise-multiplier must be positive"),
        (("--noise-multiplier", "nan"), "--noise-multiplier must be positive"),
    ],
)
def test_refused_parameters_exit_with_status_2(capsys, override, message) -> None:  # type: ignore[no-untyped-def]
    args = {"--noise-multiplier": "1", "--sampling-rate": "0.1", "--rounds": "3"}
    args[override[0]] = override[1]
    flat = [x for kv in args.items() for x in kv]
    assert message in _refused(capsys, [*flat, "--delta", "1e-5"])


def _accountant_refuses_tiny_noise() -> bool:
    """Whether the committed accountants refuse work beyond their bounds with a typed error."""
    import dp.accounting

    return hasattr(dp.accounting, "AccountantLimitError")


@pytest.mark.skipif(sys.platform != "linux", reason="bounds the child's memory with RLIMIT_AS")
@pytest.mark.xfail(
    not _accountant_refuses_tiny_noise(),
    reason="the PLD accountant does not yet refuse a noise multiplier of 1e-3 before allocating",
    strict=False,
)
def test_accountant_refusal_exits_with_status_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--noise-multiplier 1e-3: a typed refusal, not a MemoryError (the child is capped at 4 GB)."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    cmd = [sys.executable, "-m", "secagg", "audit", "--noise-multiplier", "1e-3"]
    cmd += ["--sampling-rate", "0.1", "--rounds", "3", "--delta", "1e-5"]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=cap,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == EXIT_REFUSED, proc.stderr
    assert proc.stderr.startswith("secagg audit: error: ") and "Traceback" not in proc.stderr
    assert "out of memory" not in proc.stderr  # refused up front, not after exhausting memory


def test_ledger_that_fails_to_load_exits_with_status_2(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ledger = PrivacyLedger()
    ledger.spend(
        RoundRecord(dp_accounting.GaussianDpEvent(2.0), ClientSampling.full(), participants=("a",))
    )
    path, out = tmp_path / "ledger.json", tmp_path / "audit.json"
    ledger.save(path)
    assert main(["audit", str(path), "--delta", "1e-5", "--quiet", "--json", str(out)]) == 0
    result = json.loads(out.read_text())  # every client every round: nothing amplified
    assert result["epsilon_amplified"] is None and result["amplification_assumption"] is None
    assert result["curve_of"] == "epsilon_every_round"
    assert result["epsilon_every_round"] == result["epsilon_per_client"] == result["curve"][-1][1]
    text = path.read_text()
    garbled = tmp_path / "garbled.json"
    garbled.write_text(text[: len(text) // 2])
    err = _refused(capsys, [str(garbled), "--delta", "1e-5"])
    assert f"cannot load the ledger {garbled}" in err
    tampered = tmp_path / "tampered.json"
    tampered.write_text(text.replace('"version": ', '"version": 9', 1))
    assert str(tampered) in _refused(capsys, [str(tampered), "--delta", "1e-5"])
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    assert "cannot read the ledger" in _refused(capsys, [str(binary), "--delta", "1e-5"])


def _three_round_ledger() -> PrivacyLedger:
    ledger = PrivacyLedger()
    for z, cohort in ((2.0, ("a", "b")), (1.5, ("a",)), (3.0, ("c",))):
        ledger.spend(
            RoundRecord(
                dp_accounting.GaussianDpEvent(z),
                ClientSampling.from_counts(2, 10),
                participants=cohort,
            )
        )
    return ledger


def _audit(path: object, *extra: str) -> list[str]:
    return [str(path), "--delta", "1e-5", *extra]


def _integrity_refused(capsys, args: list[str]) -> str:  # type: ignore[no-untyped-def]
    err = _refused(capsys, args)
    assert err.startswith("secagg audit: error: integrity check failed: ")
    assert err.count("\n") == 1  # one line
    return err


def test_a_saved_ledger_is_verified_with_its_key_file(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ledger = _three_round_ledger()
    path, out = tmp_path / "ledger.json", tmp_path / "audit.json"
    ledger.save(path)
    assert (tmp_path / "ledger.json.key").exists()
    assert main(["audit", *_audit(path, "--json", str(out))]) == 0
    result = json.loads(out.read_text())
    assert result["integrity"] == {"signed": True, "key_file": f"{path}.key"}
    assert result["rounds"] == 3
    assert result["epsilon_per_client"] == pytest.approx(
        ledger.worst_client_epsilon(1e-5), rel=1e-12
    )
    assert "warning" not in capsys.readouterr().err


def _edited(path, edit) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def test_an_edited_ledger_is_refused_with_status_2(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "ledger.json"
    _three_round_ledger().save(path)
    original = path.read_text()

    def drop_a_round(data: dict) -> None:  # type: ignore[type-arg]
        # the most expensive round goes, the rest renumbered: a careful forgery
        del data["rounds"][1]
        for i, r in enumerate(data["rounds"]):
            r["round"] = i + 1

    def raise_sigma(data: dict) -> None:  # type: ignore[type-arg]
        data["rounds"][1]["mechanism"]["noise_multiplier"] = 15.0

    for edit in (drop_a_round, raise_sigma):
        path.write_text(original)
        _edited(path, edit)
        err = _integrity_refused(capsys, _audit(path, "--json", str(tmp_path / "out.json")))
        assert f"{path} does not match its MAC" in err
        assert not (tmp_path / "out.json").exists()  # no figures from a forged ledger
    # the intact file audits again
    path.write_text(original)
    assert main(["audit", *_audit(path)]) == 0


def test_an_unsigned_ledger_needs_allow_unsigned(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ledger = _three_round_ledger()
    path, out = tmp_path / "old.json", tmp_path / "audit.json"
    path.write_text(ledger.to_json())  # as ledgers were written before they were sealed
    err = _integrity_refused(capsys, _audit(path))
    assert f"{path} is not signed" in err and "--allow-unsigned" in err
    assert main(["audit", *_audit(path, "--allow-unsigned", "--json", str(out))]) == 0
    err = capsys.readouterr().err
    assert err == (
        f"secagg audit: warning: {path} is not signed (--allow-unsigned): its figures cannot be "
        "trusted against edits of the file\n"
    )
    result = json.loads(out.read_text())
    assert result["integrity"] == {"signed": False, "key_file": None}
    assert result["epsilon_per_client"] == pytest.approx(
        ledger.worst_client_epsilon(1e-5), rel=1e-12
    )
    # --allow-unsigned does not weaken the check of a sealed ledger
    sealed = tmp_path / "sealed.json"
    ledger.save(sealed)
    _edited(sealed, lambda d: d["rounds"].pop())
    assert "does not match its MAC" in _integrity_refused(
        capsys, _audit(sealed, "--allow-unsigned")
    )


def test_a_key_file_elsewhere_is_given_with_ledger_key(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ledger = _three_round_ledger()
    path, out = tmp_path / "ledger.json", tmp_path / "audit.json"
    keys = tmp_path / "keys"
    keys.mkdir()
    ledger.save(path, key_path=keys / "run.key")
    assert not (tmp_path / "ledger.json.key").exists()
    err = _integrity_refused(capsys, _audit(path))
    assert f"no key file {path}.key" in err and "--ledger-key PATH" in err
    assert (
        main(["audit", *_audit(path, "--ledger-key", str(keys / "run.key"), "--json", str(out))])
        == 0
    )
    assert json.loads(out.read_text())["integrity"]["key_file"] == str(keys / "run.key")
    # another ledger's key does not verify it
    other = tmp_path / "other.json"
    _three_round_ledger().save(other)
    err = _integrity_refused(capsys, _audit(path, "--ledger-key", f"{other}.key"))
    assert str(path) in err
    # the options need a ledger
    params = [
        "--noise-multiplier",
        "1",
        "--sampling-rate",
        "0.1",
        "--rounds",
        "3",
        "--delta",
        "1e-5",
    ]
    assert "need a LEDGER.json" in _refused(capsys, [*params, "--allow-unsigned"])


def test_errors_are_reported(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert "missing --sampling-rate, --rounds" in _refused(
        capsys, ["--noise-multiplier", "1.0", "--delta", "1e-5"]
    )
    assert "--delta" in _refused(
        capsys, ["--noise-multiplier", "1", "--sampling-rate", "0.1", "--rounds", "3"]
    )
    missing = tmp_path / "nope.json"
    assert "cannot read the ledger" in _refused(capsys, [str(missing), "--delta", "1e-5"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "secagg-fl/privacy-ledger", "version": 99, "rounds": []}))
    assert "version" in _refused(capsys, [str(bad), "--delta", "1e-5"])
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
    assert set(result) >= {
        "epsilon_per_client",
        "epsilon_amplified",
        "amplification_assumption",
        "delta",
        "accountant",
        "curve_of",
        "curve",
    }
    assert result["curve"][-1] == [10, result["epsilon_per_client"]]


def test_plot_labels_say_which_epsilon_against_whom_and_at_what_delta(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from secagg.cli.audit import plot_labels

    sampled, every_client = tmp_path / "sampled.json", tmp_path / "all.json"
    base = ["audit", "--noise-multiplier", "1", "--rounds", "5", "--delta", "1e-6", "--quiet"]
    assert main([*base, "--sampling-rate", "0.1", "--json", str(sampled)]) == 0
    assert main([*base, "--sampling-rate", "1", "--json", str(every_client)]) == 0
    title, xlabel, ylabel = plot_labels(json.loads(sampled.read_text()))
    assert xlabel == "round"
    assert title.startswith("user-level ε, amplified by sampling (pld accountant, δ = 1e-06)")
    assert "neither chooses nor learns the sample" in title
    assert ylabel == "user-level ε (amplified by sampling) at δ = 1e-06"
    title, _, ylabel = plot_labels(json.loads(every_client.read_text()))
    assert title.startswith(
        "user-level ε, per-client, no amplification (pld accountant, δ = 1e-06)"
    )
    assert "server that chooses the cohort" in title
    assert ylabel == "user-level ε (per-client, no amplification) at δ = 1e-06"
    ledger_path, out = tmp_path / "ledger.json", tmp_path / "ledger_audit.json"
    ledger = PrivacyLedger()
    for cohort in (("a", "b"), ("a",)):
        ledger.spend(
            RoundRecord(
                dp_accounting.GaussianDpEvent(2.0), ClientSampling.full(), participants=cohort
            )
        )
    ledger.save(ledger_path)
    assert main(["audit", str(ledger_path), "--delta", "1e-5", "--quiet", "--json", str(out)]) == 0
    title, _, ylabel = plot_labels(json.loads(out.read_text()))
    assert "a client in every round" in title and "δ = 1e-05" in ylabel
