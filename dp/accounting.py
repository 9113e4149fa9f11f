"""Privacy accountants: (epsilon, delta) of composed DP events, with three back ends.

Every mechanism is described by a ``dp_accounting.DpEvent`` (dp-accounting's own events
and the two distributed events of :mod:`dp.events`). An accountant composes events and
converts the result into ``epsilon`` for a ``delta`` (or ``delta`` for an ``epsilon``):

* ``AccountantKind.PLD`` -- dp-accounting's privacy-loss-distribution accountant
  (:class:`~dp.accountants.pld.PldAccountant`, which sizes each distribution before
  building it). Tight for the (subsampled) Gaussian, Laplace and randomized response; it
  does **not** handle the distributed discrete Gaussian or Skellam events and refuses
  them with :class:`~secagg.errors.UnsupportedEventError`.
* ``AccountantKind.RDP`` -- dp-accounting's Renyi accountant extended with RDP bounds for
  :class:`~dp.events.DistributedDiscreteGaussianDpEvent` and
  :class:`~dp.events.DistributedSkellamDpEvent`, alone or under Poisson subsampling
  (:class:`~dp.accountants.rdp.RdpAccountant`, whose module states the bounds).
* ``AccountantKind.PRV`` -- Opacus' privacy-random-variable accountant (Gopi et al. 2021),
  for the Gaussian and the Poisson-subsampled Gaussian only
  (:class:`~dp.accountants.prv.PrvAccountant`).

The distributed discrete Gaussian has, besides its RDP bound, a much tighter route:
:func:`~dp.accountants.distributed_pld.distributed_pld_epsilon` accounts the Gaussian
mechanism with the same noise multiplier by PLD and adds a proven closeness correction.
At the demo's 32-bit ring the correction is ``~1e-3`` in epsilon: 5.10 where the RDP
bound gives 7.58. The ledger reports the smaller of the two for every composition with
such events (under its ``pld`` and ``rdp`` accountants alike);
:func:`~dp.accountants.distributed_pld.distributed_epsilon` computes the same figure for
one event.

Every accountant validates the events before any work
(:func:`~dp.accountants.base.validate_event`: finite, non-negative noise, sampling rates
in ``[0, 1]``, integer counts ``>= 1``) and sizes the work beforehand, refusing with
:class:`~dp.accountants.base.AccountantLimitError` (an
:class:`~secagg.errors.InvalidParameterError`) anything above
:data:`~dp.accountants.base.MAX_ACCOUNTANT_MEMORY`: the PLD from dp-accounting's own
truncation bounds, the PRV from Opacus' mesh formula, the RDP from the number and size
of the orders. The message says which accountant or parameter to change.

Events are plain data; :func:`~dp.event_json.event_to_dict` and
:func:`~dp.event_json.event_from_dict` serialise them (ours included) to JSON-compatible
dictionaries, restricted to a whitelist of event classes so that loading a file never
imports arbitrary code.

This module gathers the public names of :mod:`dp.accountants` and :mod:`dp.event_json`
in one place; each is defined in the module named after its concept.
"""

from __future__ import annotations

from dp.accountants.base import (
    DEFAULT_PLD_DISCRETIZATION,
    MAX_ACCOUNTANT_MEMORY,
    AccountantKind,
    AccountantLimitError,
    NeighboringRelation,
    validate_event,
)
from dp.accountants.distributed_pld import (
    contains_distributed_discrete_gaussian,
    ddg_gaussian_closeness,
    distributed_epsilon,
    distributed_pld_epsilon,
)
from dp.accountants.factory import (
    check_supported,
    compute_delta,
    compute_epsilon,
    make_accountant,
    rdp_curve,
    supports,
)
from dp.accountants.gaussian import gaussian_dp_delta, gaussian_dp_epsilon
from dp.accountants.pld import PldAccountant
from dp.accountants.prv import PrvAccountant
from dp.accountants.rdp import (
    RdpAccountant,
    ddg_rdp,
    poisson_subsampled_rdp,
    rdp_to_epsilon,
    skellam_rdp,
)
from dp.event_json import event_from_dict, event_key, event_to_dict

__all__ = [
    "AccountantKind",
    "AccountantLimitError",
    "PldAccountant",
    "validate_event",
    "MAX_ACCOUNTANT_MEMORY",
    "NeighboringRelation",
    "RdpAccountant",
    "PrvAccountant",
    "make_accountant",
    "compute_epsilon",
    "compute_delta",
    "supports",
    "check_supported",
    "rdp_curve",
    "rdp_to_epsilon",
    "ddg_rdp",
    "skellam_rdp",
    "poisson_subsampled_rdp",
    "event_to_dict",
    "event_from_dict",
    "event_key",
    "gaussian_dp_delta",
    "gaussian_dp_epsilon",
    "ddg_gaussian_closeness",
    "distributed_pld_epsilon",
    "distributed_epsilon",
    "contains_distributed_discrete_gaussian",
    "DEFAULT_PLD_DISCRETIZATION",
]
