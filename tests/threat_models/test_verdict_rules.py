"""The verdict rule of multi-target rows and the epsilon every DP row states."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest

from dp.accountants.factory import compute_epsilon
from secagg.errors import InvalidParameterError
from threat_models.attacks.metrics import RECOGNISABLE_DB, Baselines
from threat_models.evaluation import (
    EvaluationConfig,
    EvaluationResult,
    Expectation,
    Family,
    Protection,
    Row,
    scoring,
)
from threat_models.evaluation.rows import PrivacyLevel
from threat_models.evaluation.scoring import (
    DELTA,
    best_target_db,
    gaussian_privacy,
    gradient_rows,
    target_leaked,
)

BASE = Baselines(11.0, 8.0, (10.0, 11.0, 12.0, 11.0))
#: one target leaked (25 dB), three at the trivial attacker's level: the mean is 14 dB
ONE_LEAKED = (25.0, 11.0, 10.0, 10.0)
#: the control attacked four targets and missed one
ONE_MISSED = (35.0, 31.0, 28.0, 9.0)


def _mean_rule(psnrs: object) -> bool:
    """The rule the evaluation used to apply to defended rows: the mean over targets."""
    return float(np.mean(np.asarray(psnrs, dtype=np.float64))) >= RECOGNISABLE_DB


def _primary(psnrs: tuple[float, ...], *, expected: bool, control: bool = False) -> Row:
    rows = gradient_rows(
        attack="a",
        defense="secure aggregation + distributed DP",
        setting="s",
        psnrs=psnrs,
        base=BASE,
        expected=expected,
        protection=Protection.DP if control else Protection.SECURE_AGGREGATION_DP,
        positive_control=control,
        family=Family.MODEL_LEVEL,
        privacy=None if control else gaussian_privacy(0.5),
    )
    (primary,) = [r for r in rows if r.primary]
    return primary


def test_the_best_target_decides() -> None:
    assert best_target_db(ONE_LEAKED) == 25.0
    assert target_leaked(ONE_LEAKED)
    assert not target_leaked((19.9, 11.0))
    assert target_leaked((RECOGNISABLE_DB,))
    # the positive control: the mean rule hides the leaked target
    assert not _mean_rule(ONE_LEAKED)
    with pytest.raises(InvalidParameterError):
        best_target_db(())


def test_a_defended_row_that_leaks_one_target_is_reported_as_leaking() -> None:
    row = _primary(ONE_LEAKED, expected=False)
    assert row.metric == "best_psnr_db" and row.value == 25.0
    assert row.baseline == 12.0  # the trivial attacker's best target
    assert row.succeeded
    assert row.expectation is Expectation.REGRESSION
    result = EvaluationResult(EvaluationConfig(quick=True), (row,), (), (), {}, "ideal sum")
    assert result.unexpected == (row,)
    assert result.not_stopped_by_secure_aggregation() == (row,)
    # every row of the attack carries the same verdict, the mean's included
    rows = gradient_rows(
        attack="a",
        defense="d",
        setting="s",
        psnrs=ONE_LEAKED,
        base=BASE,
        expected=False,
        protection=Protection.DP,
    )
    assert all(r.succeeded for r in rows)
    (mean,) = [r for r in rows if r.metric == "psnr_db"]
    assert mean.value == pytest.approx(14.0) and not mean.primary


def test_the_mean_rule_would_have_hidden_the_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above catches a weakened rule: under the mean it reads "stopped"."""
    monkeypatch.setattr(scoring, "target_leaked", _mean_rule)
    row = _primary(ONE_LEAKED, expected=False)
    assert not row.succeeded
    assert row.expectation is Expectation.MET  # what the old rule reported: a hidden leak


def test_a_control_is_judged_by_the_same_rule() -> None:
    control = _primary(ONE_MISSED, expected=True, control=True)
    assert control.succeeded and control.expectation is Expectation.MET
    assert control.value == 35.0
    failed = _primary((19.0, 9.0, 8.0), expected=True, control=True)
    assert not failed.succeeded and failed.expectation is Expectation.CONTROL_FAILED
    result = EvaluationResult(
        EvaluationConfig(quick=True), (control, failed), (), (), {}, "ideal sum"
    )
    assert not result.controls_passed
    # the multi-image form (images at 20 dB primary) follows the same rule
    rows = gradient_rows(
        attack="a",
        defense="d",
        setting="s",
        psnrs=ONE_LEAKED,
        base=BASE,
        expected=False,
        protection=Protection.SECURE_AGGREGATION,
        multi=True,
    )
    (primary,) = [r for r in rows if r.primary]
    assert primary.metric == "images_above_20db" and primary.value == 1.0 and primary.succeeded


def test_epsilon_is_the_exact_gaussian_composed_over_the_releases() -> None:
    one = gaussian_privacy(1.0)
    event = dp_accounting.GaussianDpEvent(1.0)
    assert one.epsilon == pytest.approx(compute_epsilon(event, DELTA), rel=1e-3)
    assert one.delta == DELTA == 1e-5 and one.level is PrivacyLevel.USER
    sixteen = gaussian_privacy(2.0, 16)
    assert sixteen.epsilon == pytest.approx(gaussian_privacy(0.5).epsilon)
    composed = dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(2.0), 16)
    assert sixteen.epsilon == pytest.approx(compute_epsilon(composed, DELTA), rel=1e-3)
    # the RDP accountant is looser, never tighter
    assert compute_epsilon(composed, DELTA, accountant="rdp") >= sixteen.epsilon
    assert gaussian_privacy(0.1).epsilon > gaussian_privacy(0.2).epsilon > one.epsilon
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(InvalidParameterError):
            gaussian_privacy(bad)
    with pytest.raises(InvalidParameterError):
        gaussian_privacy(1.0, 0)


def test_a_dp_row_states_its_epsilon_in_json_and_a_plain_row_null() -> None:
    noised = _primary(ONE_LEAKED, expected=False).to_json()
    assert noised["epsilon"] == pytest.approx(gaussian_privacy(0.5).epsilon)
    assert noised["delta"] == 1e-5 and noised["epsilon_level"] == "user"
    plain = _primary(ONE_MISSED, expected=True, control=True).to_json()
    assert plain["epsilon"] is None and plain["delta"] is None and plain["epsilon_level"] is None
