"""Saved ledgers are sealed with an HMAC: edits, rollbacks and swapped files are refused."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import dp_accounting
import pytest

from dp.ledger import KEY_SUFFIX, ClientSampling, PrivacyLedger, RoundRecord
from secagg.cli import main
from secagg.errors import InvalidParameterError, LedgerIntegrityError

G = dp_accounting.GaussianDpEvent


def _ledger(rounds: int = 5, z: float = 1.0) -> PrivacyLedger:
    ledger = PrivacyLedger()
    for _ in range(rounds):
        ledger.spend(
            RoundRecord(G(z), ClientSampling.from_counts(10, 100), participants=("a", "b"))
        )
    return ledger


def _edit(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_round_trip_with_a_private_key_file(tmp_path: Path) -> None:
    ledger, path = _ledger(), tmp_path / "ledger.json"
    ledger.save(path)
    key_file = Path(str(path) + KEY_SUFFIX)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    loaded = PrivacyLedger.load(path)
    assert loaded.to_json() == ledger.to_json()
    assert loaded.ledger_id == ledger.ledger_id
    assert loaded.population_epsilon(1e-5) == ledger.population_epsilon(1e-5)
    # saving again (more rounds) reuses the key
    key = json.loads(key_file.read_text())["key"]
    loaded.spend(RoundRecord(G(1.0), ClientSampling.from_counts(10, 100), participants=("a",)))
    loaded.save(path)
    assert json.loads(key_file.read_text())["key"] == key
    assert len(PrivacyLedger.load(path)) == 6


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d["rounds"].pop(),  # drop a round (the last: numbering stays valid)
        lambda d: d["rounds"][0]["mechanism"].update(noise_multiplier=1e30),
        lambda d: d["rounds"][1].update(mechanism={"@type": "NoOpDpEvent"}),
        lambda d: d["rounds"][2]["sampling"].update(rate=1e-6),
        lambda d: d.update(accountant="rdp"),
        lambda d: d["rounds"][3].update(participants=["a"]),
    ],
    ids=["drop", "sigma", "no-op", "rate", "accountant", "participants"],
)
def test_any_edit_is_detected(tmp_path: Path, tamper) -> None:  # type: ignore[no-untyped-def]
    ledger, path = _ledger(), tmp_path / "ledger.json"
    ledger.save(path)
    _edit(path, tamper)
    with pytest.raises(LedgerIntegrityError, match="does not match its MAC"):
        PrivacyLedger.load(path)


def test_edited_ledger_is_refused_by_secagg_audit(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "ledger.json"
    _ledger().save(path)
    _edit(path, lambda d: d["rounds"][0]["mechanism"].update(noise_multiplier=1e30))
    assert main(["audit", str(path), "--delta", "1e-5"]) != 0
    assert "does not match its MAC" in capsys.readouterr().err


def test_rollback_to_an_older_valid_copy_is_detected(tmp_path: Path) -> None:
    ledger, path = _ledger(3), tmp_path / "ledger.json"
    ledger.save(path)
    old = path.read_text()
    ledger.spend(RoundRecord(G(1.0), ClientSampling.from_counts(10, 100), participants=("a",)))
    ledger.save(path)
    path.write_text(old)  # validly signed, but older than the key file says
    with pytest.raises(LedgerIntegrityError, match="older copy"):
        PrivacyLedger.load(path)
    # and a stale in-memory copy cannot overwrite the newer file either
    stale = _ledger(1)
    stale._ledger_id = ledger.ledger_id
    with pytest.raises(LedgerIntegrityError, match="roll it back"):
        stale.save(path)


def test_another_runs_ledger_in_its_place_is_detected(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    _ledger(5).save(a)
    _ledger(5, z=50.0).save(b)
    Path(a).write_text(Path(b).read_text())
    with pytest.raises(LedgerIntegrityError):
        PrivacyLedger.load(a)


def test_explicit_key_and_min_rounds(tmp_path: Path) -> None:
    key = os.urandom(32)
    ledger, path = _ledger(4), tmp_path / "ledger.json"
    ledger.save(path, key=key)
    assert not Path(str(path) + KEY_SUFFIX).exists()
    assert len(PrivacyLedger.load(path, key=key, min_rounds=4)) == 4
    with pytest.raises(LedgerIntegrityError, match="fewer than"):
        PrivacyLedger.load(path, key=key, min_rounds=5)
    with pytest.raises(LedgerIntegrityError, match="does not match"):
        PrivacyLedger.load(path, key=os.urandom(32))
    with pytest.raises(LedgerIntegrityError, match="no key file"):
        PrivacyLedger.load(path)
    with pytest.raises(InvalidParameterError):
        ledger.save(path, key=b"short")


def test_unsigned_ledgers_need_an_explicit_opt_in(tmp_path: Path) -> None:
    ledger, path = _ledger(2), tmp_path / "old.json"
    path.write_text(ledger.to_json())
    with pytest.raises(LedgerIntegrityError, match="not signed"):
        PrivacyLedger.load(path)
    assert len(PrivacyLedger.load(path, allow_unsigned=True)) == 2
    # a version-1 file (before ledger ids) still reads with the opt-in
    _edit(path, lambda d: (d.update(version=1), d.pop("ledger_id")))
    assert len(PrivacyLedger.load(path, allow_unsigned=True)) == 2


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    path = tmp_path / "ledger.json"
    _ledger(2).save(path)
    os.chmod(str(path) + KEY_SUFFIX, 0o644)
    with pytest.raises(LedgerIntegrityError, match="chmod 600"):
        PrivacyLedger.load(path)


def test_stripping_the_mac_does_not_help(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    _ledger(3).save(path)
    _edit(path, lambda d: d.pop("integrity"))
    with pytest.raises(LedgerIntegrityError, match="not signed"):
        PrivacyLedger.load(path)
