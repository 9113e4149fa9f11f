"""Privacy-hardened secure aggregation for federated learning.

``secagg`` holds the cryptographic primitives (the precise, parameterised layer) and the
recipe users drive from their training loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secagg.errors import SecAggError

if TYPE_CHECKING:
    from secagg.recipe import AggregationProtocol, DPMode, RoundReport, SecureAggregator

__all__ = ["SecAggError", "__version__", "SecureAggregator", "AggregationProtocol", "DPMode", "RoundReport"]
__version__ = "0.1.0"
"""The installed release of secagg-fl (the ``version`` of ``pyproject.toml``)."""

# The recipe is imported on first use, so that ``import secagg`` (and ``secagg --help``)
# stays light.
_RECIPE_NAMES = frozenset({"SecureAggregator", "AggregationProtocol", "DPMode", "RoundReport"})


def __getattr__(name: str) -> object:
    if name in _RECIPE_NAMES:
        from secagg import recipe

        return getattr(recipe, name)
    raise AttributeError(f"module 'secagg' has no attribute {name!r}")
