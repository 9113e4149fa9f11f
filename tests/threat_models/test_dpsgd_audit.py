"""The DP-SGD audit: canary examples under Opacus, lower bound against Opacus's accountant."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import pytest

from dp.audit import OneRunAuditResult
from dp.opacus_client import OpacusAccountantKind, OpacusClientState
from secagg.errors import InvalidParameterError
from threat_models.data import DatasetName, ImageData, load_dataset
from threat_models.evaluation.audit_rule import SIGNIFICANCE, audit_refutes_accountant
from threat_models.evaluation.dpsgd_audit import (
    DPSGD_ACCOUNTANT,
    DpSgdAuditRun,
    DpSgdAuditSizes,
    dpsgd_audit_row,
    dpsgd_audit_rows,
    dpsgd_audit_sizes,
    dpsgd_canary_run,
)
from threat_models.evaluation.rows import Expectation, Family, PrivacyLevel, Protection
from threat_models.evaluation.scoring import DELTA

#: the quick sizes: the honest run and its control take a few seconds together
QUICK = dpsgd_audit_sizes(quick=True)


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return load_dataset(DatasetName.DIGITS)


@pytest.fixture(scope="module")
def honest(digits: ImageData) -> DpSgdAuditRun:
    return dpsgd_canary_run(QUICK, seed=3, data=digits)


@pytest.fixture(scope="module")
def control(digits: ImageData) -> DpSgdAuditRun:
    return dpsgd_canary_run(
        QUICK,
        seed=4,
        applied_noise_multiplier=QUICK.weak_noise_multiplier,
        claimed_noise_multiplier=QUICK.noise_multiplier,
        data=digits,
    )


def test_an_honest_run_stays_below_opacus_epsilon(honest: DpSgdAuditRun) -> None:
    assert 0.0 <= honest.audit.epsilon_lower_bound <= honest.accountant_epsilon
    assert 1.5 < honest.accountant_epsilon < 8.0  # a modest epsilon, as DP-SGD is deployed
    row = dpsgd_audit_row(honest)
    assert not row.succeeded and row.expected is False and row.as_expected
    assert row.protection is Protection.DP


@pytest.mark.filterwarnings("ignore:Optimal order is the smallest alpha")
def test_the_under_noised_run_refutes_the_claimed_epsilon(
    honest: DpSgdAuditRun, control: DpSgdAuditRun
) -> None:
    # the accountant is told the honest run's z, so it states the honest run's epsilon
    assert control.claimed_noise_multiplier == honest.applied_noise_multiplier
    assert control.accountant_epsilon == pytest.approx(honest.accountant_epsilon, rel=1e-6)
    assert control.audit.epsilon_lower_bound > control.accountant_epsilon + 1.0
    row = dpsgd_audit_row(control, positive_control=True)
    assert row.succeeded and row.positive_control and row.as_expected
    assert row.protection is Protection.UNHARDENED
    # against the noise actually applied, the same bound refutes nothing (RDP: PRV's grid
    # does not reach z = 0.001)
    applied = OpacusClientState(
        accountant=OpacusAccountantKind.RDP,
        history=((control.applied_noise_multiplier, control.sample_rate, control.steps),),
    )
    assert not audit_refutes_accountant(control.audit.epsilon_lower_bound, applied.epsilon(DELTA))


def test_the_accountant_epsilon_is_opacus_prv_for_the_run(honest: DpSgdAuditRun) -> None:
    assert DPSGD_ACCOUNTANT is OpacusAccountantKind.PRV
    assert honest.sample_rate == pytest.approx(1.0 / QUICK.steps_per_epoch)
    assert honest.steps == QUICK.steps_per_epoch * QUICK.epochs
    state = OpacusClientState(
        accountant=OpacusAccountantKind.PRV,
        history=((QUICK.noise_multiplier, honest.sample_rate, honest.steps),),
    )
    assert honest.accountant_epsilon == pytest.approx(state.epsilon(DELTA), rel=1e-6)
    assert honest.audit.delta == DELTA and honest.audit.significance == SIGNIFICANCE


def test_a_row_has_the_audit_fields(honest: DpSgdAuditRun) -> None:
    row = dpsgd_audit_row(honest)
    assert row.family is Family.EMPIRICAL_AUDIT and row.metric == "epsilon_lower_bound"
    assert row.value == honest.audit.epsilon_lower_bound
    assert row.baseline == row.epsilon == honest.accountant_epsilon
    assert row.threshold is None  # each seed's bound is a confidence bound: seeds decide
    assert row.threshold_above and row.baseline_name == "accountant epsilon"
    assert row.delta == DELTA and row.epsilon_level is PrivacyLevel.SAMPLE
    assert row.accuracy == honest.accuracy and 0.6 < honest.accuracy <= 1.0
    assert row.noise_multiplier == QUICK.noise_multiplier
    for part in (
        f"m = {QUICK.canaries} dirac canaries ({honest.included} included)",
        f"{honest.steps} steps",
        f"z = {QUICK.noise_multiplier:g} applied",
        f"q = {honest.sample_rate:.4g}",
        "Opacus PRV",
    ):
        assert part in row.note


def test_a_bound_above_the_accountant_is_a_regression_and_a_dead_control_fails(
    honest: DpSgdAuditRun,
) -> None:
    broken = replace(
        honest, audit=replace(honest.audit, epsilon_lower_bound=honest.accountant_epsilon + 0.1)
    )
    assert dpsgd_audit_row(broken).expectation is Expectation.REGRESSION
    powerless = OneRunAuditResult(0.0, QUICK.canaries, 0, 0, DELTA, SIGNIFICANCE)
    dead = replace(honest, audit=powerless)
    assert dpsgd_audit_row(dead, positive_control=True).expectation is Expectation.CONTROL_FAILED


def test_the_rows_of_a_run_are_the_honest_one_and_its_control() -> None:
    rows = dpsgd_audit_rows(0, quick=True)
    assert [r.positive_control for r in rows] == [False, True]
    assert all(r.as_expected for r in rows)
    # the rows of different seeds are the same numbers of the matrix (same labels)
    assert rows[0].setting == rows[1].setting
    assert "z = 0.001 applied, accountant told z = 1.5" in rows[1].defense


def test_full_sizes_have_more_canaries() -> None:
    full = dpsgd_audit_sizes(quick=False)
    assert full.canaries > QUICK.canaries
    assert full.steps_per_epoch * full.epochs == QUICK.steps_per_epoch * QUICK.epochs


@pytest.mark.parametrize(
    "make",
    [
        lambda: replace(QUICK, canaries=1),
        lambda: replace(QUICK, noise_multiplier=-1.0),
        lambda: replace(QUICK, noise_multiplier=0.0),
        lambda: replace(QUICK, weak_noise_multiplier=-0.5),
        lambda: replace(QUICK, noise_multiplier=math.nan),
        lambda: replace(QUICK, steps_per_epoch=0),
        lambda: replace(QUICK, epochs=0),
        lambda: replace(QUICK, canaries=2.5),  # type: ignore[arg-type]
    ],
)
def test_bad_sizes_are_refused(make: Callable[[], DpSgdAuditSizes]) -> None:
    with pytest.raises(InvalidParameterError):
        make()


def test_two_canaries_and_a_positive_multiplier_are_the_least_accepted() -> None:
    sizes = DpSgdAuditSizes(
        canaries=2, train_examples=100, steps_per_epoch=2, epochs=1, noise_multiplier=1e-9
    )
    assert sizes.canaries == 2
    with pytest.raises(InvalidParameterError):
        DpSgdAuditSizes(
            canaries=1, train_examples=100, steps_per_epoch=2, epochs=1, noise_multiplier=1.0
        )


def test_bad_run_arguments_are_refused(digits: ImageData) -> None:
    with pytest.raises(InvalidParameterError):
        dpsgd_canary_run(QUICK, seed=0, applied_noise_multiplier=-1.0, data=digits)
    with pytest.raises(InvalidParameterError):
        dpsgd_canary_run(QUICK, seed=0, claimed_noise_multiplier=0.0, data=digits)
    with pytest.raises(InvalidParameterError):
        dpsgd_canary_run(QUICK, seed=-1, data=digits)
    with pytest.raises(InvalidParameterError):
        dpsgd_canary_run(replace(QUICK, train_examples=len(digits)), seed=0, data=digits)
    with pytest.raises(InvalidParameterError):  # more batches than examples can fill
        dpsgd_canary_run(
            replace(QUICK, train_examples=10, canaries=2, steps_per_epoch=9), seed=0, data=digits
        )
