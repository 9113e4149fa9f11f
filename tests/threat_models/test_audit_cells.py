"""The empirical-audit cell: canaries under each DP defence, lower bound against the accountant."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import dp_accounting
import pytest

from dp.accountants.factory import compute_epsilon
from dp.audit import OneRunAuditResult
from secagg.errors import InvalidParameterError
from threat_models.evaluation import (
    TABLE_WIDTH,
    EvaluationConfig,
    EvaluationResult,
    Expectation,
    Family,
    Protection,
    run_evaluation,
    summary_table,
)
from threat_models.evaluation.audit_cells import (
    AuditDefence,
    AuditSizes,
    CanaryRun,
    audit_row,
    audit_sizes,
    canary_run,
)
from threat_models.evaluation.audit_rule import SIGNIFICANCE, audit_refutes_accountant
from threat_models.evaluation.matrix import AUDIT_CELL
from threat_models.evaluation.report import write_report
from threat_models.evaluation.rows import PrivacyLevel
from threat_models.evaluation.scoring import DELTA

#: small enough for a test, large enough for the positive control to have power
SMALL = AuditSizes(canaries=400, dimension=1 << 12, rounds=2, clients=4, noise_multiplier=1.0)


def test_the_rule_refutes_only_a_bound_above_the_accountant() -> None:
    assert audit_refutes_accountant(2.0, 1.0)
    assert not audit_refutes_accountant(1.0, 1.0)
    assert not audit_refutes_accountant(0.0, 3.0)
    assert not audit_refutes_accountant(5.0, math.inf)
    with pytest.raises(InvalidParameterError):
        audit_refutes_accountant(math.nan, 1.0)


@pytest.mark.parametrize("defence", list(AuditDefence))
def test_an_honest_run_stays_below_its_accountant_and_an_under_noised_one_does_not(
    defence: AuditDefence,
) -> None:
    honest = canary_run(defence, SMALL, seed=5)
    assert 0.0 < honest.audit.epsilon_lower_bound <= honest.accountant_epsilon
    row = audit_row(honest)
    assert not row.succeeded and row.expected is False and row.as_expected
    # positive control: the accountant is told z = 20 while z = 0.1 is applied
    weak = canary_run(
        defence, SMALL, seed=6, applied_noise_multiplier=0.1, claimed_noise_multiplier=20.0
    )
    assert weak.accountant_epsilon < 0.5 < honest.accountant_epsilon
    assert weak.audit.epsilon_lower_bound > weak.accountant_epsilon
    control = audit_row(weak, positive_control=True)
    assert control.succeeded and control.positive_control and control.as_expected
    assert control.protection is Protection.UNHARDENED
    if defence is AuditDefence.CENTRAL:
        # against the noise actually applied, the same bound refutes nothing
        applied = dp_accounting.SelfComposedDpEvent(
            dp_accounting.GaussianDpEvent(0.1), SMALL.rounds
        )
        true_epsilon = compute_epsilon(applied, DELTA, accountant="rdp")
        assert not audit_refutes_accountant(weak.audit.epsilon_lower_bound, true_epsilon)


def test_the_central_accountant_epsilon_is_the_composed_gaussian() -> None:
    run = canary_run(AuditDefence.CENTRAL, SMALL, seed=1)
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(1.0), SMALL.rounds)
    assert run.accountant_epsilon == pytest.approx(compute_epsilon(event, DELTA), rel=1e-9)
    assert run.audit.delta == DELTA and run.audit.significance == SIGNIFICANCE


def test_a_row_states_the_accountant_epsilon_and_the_audit() -> None:
    run = canary_run(AuditDefence.DISTRIBUTED, SMALL, seed=2)
    row = audit_row(run)
    assert row.family is Family.EMPIRICAL_AUDIT and row.metric == "epsilon_lower_bound"
    assert row.value == run.audit.epsilon_lower_bound
    assert row.baseline == row.epsilon == run.accountant_epsilon
    assert row.delta == DELTA and row.epsilon_level is PrivacyLevel.USER
    assert row.protection is Protection.SECURE_AGGREGATION_DP
    assert f"{SMALL.canaries} canaries ({run.included} included)" in row.note
    assert "confidence 95%" in row.note


def test_an_honest_row_whose_bound_exceeds_the_accountant_is_a_regression() -> None:
    run = canary_run(AuditDefence.CENTRAL, SMALL, seed=3)
    broken = replace(
        run, audit=replace(run.audit, epsilon_lower_bound=run.accountant_epsilon + 0.1)
    )
    assert audit_row(broken).expectation is Expectation.REGRESSION
    powerless = OneRunAuditResult(0.0, SMALL.canaries, 0, 0, DELTA, SIGNIFICANCE)
    dead: CanaryRun = replace(run, audit=powerless)
    assert audit_row(dead, positive_control=True).expectation is Expectation.CONTROL_FAILED


def test_quick_sizes_are_smaller_than_full_ones() -> None:
    for defence in AuditDefence:
        quick, full = audit_sizes(defence, True), audit_sizes(defence, False)
        assert quick.canaries * quick.dimension * quick.rounds < (
            full.canaries * full.dimension * full.rounds
        )
    with pytest.raises(InvalidParameterError):
        AuditSizes(canaries=1, dimension=8, rounds=1, clients=0, noise_multiplier=1.0)
    with pytest.raises(InvalidParameterError):
        AuditSizes(canaries=8, dimension=8, rounds=1, clients=0, noise_multiplier=0.0)


@pytest.fixture(scope="module")
def audit_result() -> EvaluationResult:
    config = EvaluationConfig(quick=True, families=frozenset({Family.EMPIRICAL_AUDIT}))
    return run_evaluation(config, progress=False)


def test_the_quick_cell_meets_every_expectation(audit_result: EvaluationResult) -> None:
    assert not audit_result.errors and audit_result.controls_passed
    assert not audit_result.unexpected
    rows = audit_result.rows
    assert len(rows) == 2 * len(AuditDefence) + 2  # and the DP-SGD audit with its control
    assert sum(r.positive_control for r in rows) == len(AuditDefence) + 1
    assert all(r.epsilon is not None and r.delta == DELTA for r in rows)
    assert not audit_result.not_stopped_by_secure_aggregation()
    assert audit_result.seconds[AUDIT_CELL] < 60.0


def test_the_report_lists_the_bound_next_to_the_accountant(
    audit_result: EvaluationResult, tmp_path: Path
) -> None:
    text = write_report(audit_result, tmp_path).read_text()
    assert "## empirical audit" in text and "| lower bound | accountant epsilon |" in text
    assert "The audit cell took" in text
    for row in audit_result.rows:
        assert row.defense in text
    table = summary_table(audit_result)
    assert max(len(line) for line in table.splitlines()) <= TABLE_WIDTH
    assert "eps lower bound" in table
    doc = audit_result.to_json()
    rows = doc["rows"]
    assert isinstance(rows, list)
    assert {r["metric"] for r in rows} == {"epsilon_lower_bound"}
