"""Privacy-hardened secure aggregation for federated learning.

``secagg`` holds the cryptographic primitives (the precise, parameterised layer) and the
recipe users drive from their training loop.

* The recipe (:mod:`secagg.recipe`, the top layer): :class:`SecureAggregator` (one object
  per training run; ``sample_cohort()`` and ``mean(deltas)`` once per round), with
  :class:`AggregationProtocol` (the recipe's name for
  :class:`protocols.options.ProtocolName`), :class:`DPMode` and the per-round
  :class:`RoundReport`.
* Errors: every error of the library derives from :class:`SecAggError`
  (:mod:`secagg.errors`).
* Primitives, each parameterised by its caller: :mod:`secagg.primitives.encoding`
  (fixed-point vectors in ``Z_(2^b)``), :mod:`secagg.primitives.prg` (AES-CTR / ChaCha20
  masks), :mod:`secagg.primitives.keys` (X25519 + HKDF), :mod:`secagg.primitives.aead`
  (AES-GCM share cipher), :mod:`secagg.primitives.signing` (Ed25519),
  :mod:`secagg.primitives.shamir`, :mod:`secagg.primitives.paillier`,
  :mod:`secagg.primitives.threshold_paillier`, :mod:`secagg.primitives.transcript`.
* The ``secagg`` console script: :mod:`secagg.cli`.

The protocols built on them are in :mod:`protocols`, the privacy accounting in :mod:`dp`,
the adversary and the choice of parameters in :mod:`threat_models`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secagg._moved import install as _install_moved_paths
from secagg.errors import SecAggError

if TYPE_CHECKING:
    from secagg.primitives.simulation import UnsafeSimulationWarning
    from secagg.recipe.aggregator import SecureAggregator
    from secagg.recipe.options import AggregationProtocol, DPMode
    from secagg.recipe.report import RoundReport

__all__ = [
    "SecAggError",
    "__version__",
    "SecureAggregator",
    "AggregationProtocol",
    "DPMode",
    "RoundReport",
    "UnsafeSimulationWarning",
]
__version__ = "0.1.0"
"""The installed release of secagg-fl (the ``version`` of ``pyproject.toml``)."""

# The recipe is imported on first use, so that ``import secagg`` (and ``secagg --help``)
# stays light.
def __getattr__(name: str) -> object:
    if name == "SecureAggregator":
        from secagg.recipe.aggregator import SecureAggregator

        return SecureAggregator
    if name == "AggregationProtocol":
        from secagg.recipe.options import AggregationProtocol

        return AggregationProtocol
    if name == "DPMode":
        from secagg.recipe.options import DPMode

        return DPMode
    if name == "RoundReport":
        from secagg.recipe.report import RoundReport

        return RoundReport
    if name == "UnsafeSimulationWarning":
        from secagg.primitives.simulation import UnsafeSimulationWarning

        return UnsafeSimulationWarning
    raise AttributeError(f"module 'secagg' has no attribute {name!r}")


_install_moved_paths()
