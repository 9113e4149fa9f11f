"""The verdict rule of every empirical-audit row: the lower bound against the accountant.

Shared by the canary-client audit (:mod:`threat_models.evaluation.audit_cells`) and the
DP-SGD canary-example audit (:mod:`threat_models.evaluation.dpsgd_audit`): one
significance, one rule, one function.
"""

from __future__ import annotations

import math

from secagg.errors import InvalidParameterError

__all__ = ["SIGNIFICANCE", "AUDIT_RULE", "audit_refutes_accountant"]

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
