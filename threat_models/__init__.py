"""Adversaries as data, protocol parameters derived from them, attacks and evaluations.

:class:`ThreatModel` describes the adversary (server class, colluding fraction, dropout
fraction, minimum aggregate size); :func:`secagg_parameters` and
:func:`secagg_plus_parameters` derive the SecAgg / SecAgg+ graph degree and Shamir
threshold from it or raise :class:`~secagg.errors.InfeasibleThreatModelError`.
The attacks (:mod:`threat_models.attacks`) and the evaluation harness
(:mod:`threat_models.evaluation`) are imported explicitly: the attacks on data and the
harness need the ``eval`` extra (torch); the attacks on the protocol itself
(:mod:`threat_models.attacks.protocol_level`, :mod:`threat_models.attacks.lying_server`)
run with the core install.

How to choose the threat model, the cohort, the noise, the ring, the Paillier key and the
protocol, with the figures behind each choice, is the page below (``PARAMETERS.md`` in
this package).

.. include:: ./PARAMETERS.md
"""

from __future__ import annotations

from secagg._moved import install as _install_moved_paths
from threat_models.model import ServerClass, ThreatModel
from threat_models.parameters import (
    GraphKind,
    ProtocolParameters,
    check_parameters,
    secagg_parameters,
    secagg_plus_parameters,
    select_parameters,
)

__all__ = [
    "ServerClass",
    "ThreatModel",
    "GraphKind",
    "ProtocolParameters",
    "check_parameters",
    "secagg_parameters",
    "secagg_plus_parameters",
    "select_parameters",
]

_install_moved_paths()
