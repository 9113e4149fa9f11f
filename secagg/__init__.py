"""Privacy-hardened secure aggregation for federated learning.

``secagg`` holds the cryptographic primitives (the precise, parameterised layer) and the
recipe users drive from their training loop.
"""

from __future__ import annotations

from secagg.errors import SecAggError

__all__ = ["SecAggError", "__version__"]
__version__ = "0.1.0"
