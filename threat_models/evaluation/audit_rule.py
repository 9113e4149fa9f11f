"""The verdict rule of every empirical-audit row: the lower bound against the accountant.

Shared by the canary-client audit (:mod:`threat_models.evaluation.audit_cells`) and the
DP-SGD canary-example audit (:mod:`threat_models.evaluation.dpsgd_audit`): one
significance, one rule, one function.
"""

from __future__ import annotations

import math

from dp.audit import OneRunAuditResult
from secagg.errors import InvalidParameterError
from threat_models.evaluation.rows import Family, PrivacyLevel, Protection, Row

__all__ = ["SIGNIFICANCE", "AUDIT_RULE", "audit_refutes_accountant", "audit_bound_row"]

#: Significance of every lower bound (confidence ``1 - SIGNIFICANCE``).
SIGNIFICANCE = 0.05

#: The verdict rule of the audit rows, in words (the report's).
AUDIT_RULE = (
    "an audit row succeeds when the one-run epsilon lower bound (confidence "
    f"{1 - SIGNIFICANCE:.0%}) exceeds the accountant's epsilon for the same run; an honest "
    "defence must keep it at or below (a bound above is a bug of the accountant or the "
    "mechanism), and its positive control -- the accountant told a noise multiplier far "
    "larger than the one applied -- must exceed it; over several seeds each seed's bound is "
    "already a confidence bound, so the seeds decide (an honest row refuted by any seed is "
    "reported refuted, a control must refute on every seed)"
)


def audit_refutes_accountant(lower_bound: float, accountant_epsilon: float) -> bool:
    """The verdict of an audit row (:data:`AUDIT_RULE`): the lower bound exceeds the
    accountant's epsilon.

    Raises:
        InvalidParameterError: either epsilon is NaN.
    """
    if math.isnan(lower_bound) or math.isnan(accountant_epsilon):
        raise InvalidParameterError("epsilons must be numbers")
    return lower_bound > accountant_epsilon


def audit_bound_row(
    *,
    attack: str,
    defense: str,
    setting: str,
    audit: OneRunAuditResult,
    accountant_epsilon: float,
    positive_control: bool,
    protection: Protection,
    note: str,
    level: PrivacyLevel,
    noise_multiplier: float | None = None,
    accuracy: float | None = None,
) -> Row:
    """The row of one audited run: its lower bound against the accountant's epsilon.

    The verdict is :func:`audit_refutes_accountant`; a positive control must refute, an
    honest run must not. No ``threshold``: each seed's value is already a confidence
    bound, so over several seeds the seeds decide (:data:`AUDIT_RULE`).
    """
    return Row(
        family=Family.EMPIRICAL_AUDIT,
        attack=attack,
        defense=defense,
        setting=setting,
        metric="epsilon_lower_bound",
        value=audit.epsilon_lower_bound,
        baseline=accountant_epsilon,
        baseline_name="accountant epsilon",
        succeeded=audit_refutes_accountant(audit.epsilon_lower_bound, accountant_epsilon),
        expected=positive_control,
        positive_control=positive_control,
        note=note,
        protection=protection,
        epsilon=accountant_epsilon,
        delta=audit.delta,
        epsilon_level=level,
        noise_multiplier=noise_multiplier,
        accuracy=accuracy,
    )
