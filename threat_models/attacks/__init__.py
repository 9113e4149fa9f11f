"""Attacks on federated learning updates and on secure aggregation.

Submodules: :mod:`.metrics` (PSNR, matching, baselines, ROC), :mod:`.gradient_inversion`,
:mod:`.membership`, :mod:`.model_level` (malicious server choosing the model or the
participants) and :mod:`.protocol_level` (malicious server driving the real client state
machines).

They need the ``eval`` extra (torch, Opacus, scikit-learn); without it, importing this
package raises :class:`~secagg.errors.MissingExtraError`.
"""

from __future__ import annotations

from secagg.errors import require_installed

# Checked once here, for every submodule: importing one runs this first.
require_installed(("torch",), "eval", "threat_models.attacks")
