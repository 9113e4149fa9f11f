"""dp package."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dp.accounting import AccountantKind, compute_delta, compute_epsilon, make_accountant
    from dp.audit import (
        ClopperPearsonAuditResult,
        OneRunAuditResult,
        clopper_pearson_epsilon_lower_bound,
        one_run_audit,
        one_run_epsilon_lower_bound,
    )
    from dp.canaries import CanaryClients
    from dp.ledger import (
        BudgetScope,
        ClientSampling,
        LocalDpSgd,
        PrivacyBudget,
        PrivacyLedger,
        RoundRecord,
        SamplingScheme,
        local_dp_sgd_from_opacus,
    )

# Accounting and auditing names, imported on first use so that ``import dp.<module>``
# does not pay for dp-accounting's import when it is not needed.
_LAZY = {
    "AccountantKind": "dp.accounting",
    "compute_epsilon": "dp.accounting",
    "compute_delta": "dp.accounting",
    "make_accountant": "dp.accounting",
    "PrivacyLedger": "dp.ledger",
    "PrivacyBudget": "dp.ledger",
    "BudgetScope": "dp.ledger",
    "ClientSampling": "dp.ledger",
    "SamplingScheme": "dp.ledger",
    "RoundRecord": "dp.ledger",
    "LocalDpSgd": "dp.ledger",
    "local_dp_sgd_from_opacus": "dp.ledger",
    "OneRunAuditResult": "dp.audit",
    "ClopperPearsonAuditResult": "dp.audit",
    "one_run_audit": "dp.audit",
    "one_run_epsilon_lower_bound": "dp.audit",
    "clopper_pearson_epsilon_lower_bound": "dp.audit",
    "CanaryClients": "dp.canaries",
}

__all__ = [
    "AccountantKind",
    "compute_epsilon",
    "compute_delta",
    "make_accountant",
    "PrivacyLedger",
    "PrivacyBudget",
    "BudgetScope",
    "ClientSampling",
    "SamplingScheme",
    "RoundRecord",
    "LocalDpSgd",
    "local_dp_sgd_from_opacus",
    "OneRunAuditResult",
    "ClopperPearsonAuditResult",
    "one_run_audit",
    "one_run_epsilon_lower_bound",
    "clopper_pearson_epsilon_lower_bound",
    "CanaryClients",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dp' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
