"""Differential privacy for federated learning.

Mechanisms (clipping, central and distributed noise, Opacus clients) and the privacy
ledger, accountants and audits. Every name below is imported on first use, so that
``import dp`` stays cheap (no torch, Opacus or dp-accounting until needed).

* samplers: :func:`sample_discrete_gaussian` (exact N_Z(0, sigma^2)),
  :func:`sample_skellam`, :func:`sample_poisson`, :func:`sample_gaussian` -- all from an
  AES-CTR cryptographic PRG;
* clipping: :func:`clip_l2`, :func:`clip_per_layer`, :class:`AdaptiveClipper`, ...;
* central DP: :class:`CentralGaussianMechanism` (a trusted party sees the exact sum);
* distributed DP through secure aggregation: :func:`select_parameters` and
  :class:`DistributedDPEncoder` (a ``VectorEncoder`` for the masking protocols);
* Opacus in federated clients: :func:`train_private_round`, :class:`OpacusClientState`;
* events: :class:`DistributedDiscreteGaussianDpEvent`, :class:`DistributedSkellamDpEvent`;
* accounting: :func:`compute_epsilon` (``pld``, ``rdp`` or ``prv``, :class:`AccountantKind`),
  :func:`distributed_epsilon`, and the budget-enforcing :class:`PrivacyLedger`;
* empirical audits: :func:`one_run_audit`, :class:`CanaryClients`.

How much noise to choose, and which epsilon to read (per client or amplified by
sampling), is discussed with figures in :mod:`threat_models` ("Choosing parameters").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from secagg._moved import install as _install_moved_paths

if TYPE_CHECKING:
    from dp.accountants.base import AccountantKind, AccountantLimitError
    from dp.accountants.distributed_pld import distributed_epsilon, distributed_pld_epsilon
    from dp.accountants.factory import compute_delta, compute_epsilon, make_accountant
    from dp.audit import (
        ClopperPearsonAuditResult,
        OneRunAuditResult,
        clopper_pearson_epsilon_lower_bound,
        one_run_audit,
        one_run_epsilon_lower_bound,
    )
    from dp.budget import BudgetScope, PrivacyBudget
    from dp.canaries import CanaryClients
    from dp.central import CentralGaussianMechanism, NoisedAggregate
    from dp.clipping import (
        AdaptiveClipper,
        AdaptiveClipStep,
        ClipResult,
        PerLayerClipResult,
        UpdateLayout,
        adaptive_clip_noise_params,
        clip_indicator,
        clip_l2,
        clip_per_layer,
        flatten_update,
        l2_norm,
    )
    from dp.distributed import (
        DistributedDPEncoder,
        DistributedDPParameters,
        DistributedMechanism,
        RandomizedHadamard,
        select_parameters,
        select_parameters_for_threat_model,
    )
    from dp.events import DistributedDiscreteGaussianDpEvent, DistributedSkellamDpEvent
    from dp.ledger import PrivacyLedger
    from dp.ledger_entries import (
        ClientSampling,
        LocalDpSgd,
        RoundRecord,
        SamplingScheme,
        local_dp_sgd_from_opacus,
    )
    from dp.opacus_client import (
        OpacusAccountantKind,
        OpacusClientState,
        OpacusRoundResult,
        train_private_round,
    )
    from dp.samplers import (
        sample_discrete_gaussian,
        sample_gaussian,
        sample_poisson,
        sample_skellam,
        sample_uniform,
    )

# Public names, imported on first use so that ``import dp.<module>``
# does not pay for dp-accounting's import when it is not needed.
_LAZY = {
    # mechanisms
    "sample_discrete_gaussian": "dp.samplers",
    "sample_skellam": "dp.samplers",
    "sample_poisson": "dp.samplers",
    "sample_gaussian": "dp.samplers",
    "sample_uniform": "dp.samplers",
    "clip_l2": "dp.clipping",
    "clip_per_layer": "dp.clipping",
    "l2_norm": "dp.clipping",
    "flatten_update": "dp.clipping",
    "ClipResult": "dp.clipping",
    "PerLayerClipResult": "dp.clipping",
    "UpdateLayout": "dp.clipping",
    "AdaptiveClipper": "dp.clipping",
    "AdaptiveClipStep": "dp.clipping",
    "adaptive_clip_noise_params": "dp.clipping",
    "clip_indicator": "dp.clipping",
    "CentralGaussianMechanism": "dp.central",
    "NoisedAggregate": "dp.central",
    "DistributedMechanism": "dp.distributed",
    "DistributedDPParameters": "dp.distributed",
    "DistributedDPEncoder": "dp.distributed",
    "RandomizedHadamard": "dp.distributed",
    "select_parameters": "dp.distributed",
    "select_parameters_for_threat_model": "dp.distributed",
    "DistributedDiscreteGaussianDpEvent": "dp.events",
    "DistributedSkellamDpEvent": "dp.events",
    "OpacusAccountantKind": "dp.opacus_client",
    "OpacusClientState": "dp.opacus_client",
    "OpacusRoundResult": "dp.opacus_client",
    "train_private_round": "dp.opacus_client",
    # accounting and auditing
    "AccountantKind": "dp.accountants.base",
    "compute_epsilon": "dp.accountants.factory",
    "compute_delta": "dp.accountants.factory",
    "make_accountant": "dp.accountants.factory",
    "AccountantLimitError": "dp.accountants.base",
    "distributed_pld_epsilon": "dp.accountants.distributed_pld",
    "distributed_epsilon": "dp.accountants.distributed_pld",
    "PrivacyLedger": "dp.ledger",
    "PrivacyBudget": "dp.budget",
    "BudgetScope": "dp.budget",
    "ClientSampling": "dp.ledger_entries",
    "SamplingScheme": "dp.ledger_entries",
    "RoundRecord": "dp.ledger_entries",
    "LocalDpSgd": "dp.ledger_entries",
    "local_dp_sgd_from_opacus": "dp.ledger_entries",
    "OneRunAuditResult": "dp.audit",
    "ClopperPearsonAuditResult": "dp.audit",
    "one_run_audit": "dp.audit",
    "one_run_epsilon_lower_bound": "dp.audit",
    "clopper_pearson_epsilon_lower_bound": "dp.audit",
    "CanaryClients": "dp.canaries",
}

__all__ = [
    "sample_discrete_gaussian",
    "sample_skellam",
    "sample_poisson",
    "sample_gaussian",
    "sample_uniform",
    "clip_l2",
    "clip_per_layer",
    "l2_norm",
    "flatten_update",
    "ClipResult",
    "PerLayerClipResult",
    "UpdateLayout",
    "AdaptiveClipper",
    "AdaptiveClipStep",
    "adaptive_clip_noise_params",
    "clip_indicator",
    "CentralGaussianMechanism",
    "NoisedAggregate",
    "DistributedMechanism",
    "DistributedDPParameters",
    "DistributedDPEncoder",
    "RandomizedHadamard",
    "select_parameters",
    "select_parameters_for_threat_model",
    "DistributedDiscreteGaussianDpEvent",
    "DistributedSkellamDpEvent",
    "OpacusAccountantKind",
    "OpacusClientState",
    "OpacusRoundResult",
    "train_private_round",
    "AccountantKind",
    "compute_epsilon",
    "compute_delta",
    "make_accountant",
    "AccountantLimitError",
    "distributed_pld_epsilon",
    "distributed_epsilon",
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


_install_moved_paths()
