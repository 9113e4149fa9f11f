"""Flower integration: run this library's SecAgg / SecAgg+ inside Flower apps.

* :class:`SecAggPolicy` -- what both sides run (protocol, threat model, DP, encoding);
* :class:`SecureAggregationMod` -- the client mod in front of a ``ClientApp``'s train
  function;
* :class:`SecureAggregationWorkflow` -- the server side for a ``ServerApp`` on Flower's
  Message API (one secure round with :meth:`~SecureAggregationWorkflow.aggregate`, or a
  whole FedAvg run with :meth:`~SecureAggregationWorkflow.start`);
* :mod:`protocols.flower.pki` -- identity keys for the malicious-server variant;
* :mod:`protocols.flower.deployment` -- a SuperLink and SuperNodes on loopback, for tests.

Supported Flower releases: ``flwr>=1.41,<1.43`` (1.41 and 1.42, the releases the tests
run against; the ``flower`` extra pins the same range). Importing this package needs
Flower (``pip install 'secagg-fl[flower]'``): without it the import raises
:class:`~secagg.errors.MissingExtraError`; with a release outside the range it warns
(:class:`~protocols.flower.compat.UnsupportedFlowerVersionWarning`) and goes on.
"""

from __future__ import annotations

# compat first: it imports Flower (MissingExtraError without it) and checks its version
from protocols.flower.compat import FLWR_SUPPORTED, FLWR_VERSION, UnsupportedFlowerVersionWarning
from protocols.flower.mod import SecureAggregationMod
from protocols.flower.policy import SecAggPolicy, UpdateKind
from protocols.flower.workflow import FlowerRoundResult, SecureAggregationWorkflow, WorkflowResult

__all__ = [
    "FLWR_SUPPORTED",
    "FLWR_VERSION",
    "UnsupportedFlowerVersionWarning",
    "SecAggPolicy",
    "UpdateKind",
    "SecureAggregationMod",
    "SecureAggregationWorkflow",
    "FlowerRoundResult",
    "WorkflowResult",
]
