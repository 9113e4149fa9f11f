"""Attacks on federated learning updates and on secure aggregation.

Submodules: :mod:`.metrics` (PSNR, matching, baselines, ROC), :mod:`.gradient_inversion`,
:mod:`.membership`, :mod:`.model_level` (malicious server choosing the model or the
participants), :mod:`.aggregation` (what secure aggregation reveals, computed directly),
:mod:`.protocol_level` (malicious server driving the real client state machines) and
:mod:`.lying_server` (a scripted server that lies stage by stage to the real clients).

The attacks on data (:mod:`.metrics`, :mod:`.gradient_inversion`, :mod:`.membership`,
:mod:`.model_level`) need the ``eval`` extra (torch, Opacus, scikit-learn); without it,
importing one of them raises :class:`~secagg.errors.MissingExtraError`. The attacks on the
protocol itself (:mod:`.aggregation`, :mod:`.protocol_level`, :mod:`.lying_server`) run
with the core install.
"""

from __future__ import annotations
