"""Flower integration: run this library's SecAgg / SecAgg+ inside Flower apps.

* :class:`SecAggPolicy` -- what both sides run (protocol, threat model, DP, encoding);
* :class:`SecureAggregationMod` -- the client mod in front of a ``ClientApp``'s train
  function;
* :class:`SecureAggregationWorkflow` -- the server side for a ``ServerApp`` on Flower's
  Message API (one secure round with :meth:`~SecureAggregationWorkflow.aggregate`, or a
  whole FedAvg run with :meth:`~SecureAggregationWorkflow.start`);
* :mod:`protocols.flower.pki` -- identity keys for the malicious-server variant;
* :mod:`protocols.flower.deployment` -- a SuperLink and SuperNodes on loopback, for tests.

Importing this package needs Flower (``pip install 'secagg-fl[flower]'``).
"""

from __future__ import annotations

from protocols.flower.mod import SecureAggregationMod
from protocols.flower.policy import SecAggPolicy, UpdateKind
from protocols.flower.workflow import FlowerRoundResult, SecureAggregationWorkflow, WorkflowResult

__all__ = [
    "SecAggPolicy",
    "UpdateKind",
    "SecureAggregationMod",
    "SecureAggregationWorkflow",
    "FlowerRoundResult",
    "WorkflowResult",
]
