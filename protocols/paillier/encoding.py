"""Encoders of a Paillier round: the weighted encoding and the packing it needs.

A weighted mean must not reveal any client's weight. A client with weight ``w`` therefore
encrypts ``[w x_1 .. w x_d, w]`` (:class:`WeightedEncoder`): the server learns
``sum w x`` and ``sum w`` only. The packing of the plaintexts into Paillier slots is sized
from the largest ring element one contribution may hold (:func:`packing_for`), which for a
weighted encoding is the larger of the base encoder's and the weight encoder's bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from secagg.errors import InvalidParameterError
from secagg.primitives.encoding import FixedPointEncoder, VectorEncoder
from secagg.primitives.paillier import PackingScheme
from secagg.primitives.threshold_paillier import ThresholdPublicKey

__all__ = ["WeightedEncoder", "RoundingEncoder", "packing_for"]

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]


class RoundingEncoder(VectorEncoder, Protocol):
    """An encoder whose stochastic rounding takes a generator (``encode(values, rng=...)``).

    :class:`~secagg.primitives.encoding.FixedPointEncoder` and :class:`WeightedEncoder`
    are such encoders.
    """

    def encode(self, values: npt.ArrayLike, *, rng: np.random.Generator | None = None) -> U64:
        """Encode ``values``, rounding with ``rng`` (default: a fresh OS-seeded generator)."""


@dataclass(frozen=True)
class WeightedEncoder:
    """``[w x_1 .. w x_d, w]`` -> the base encoding of ``w x`` followed by the encoded weight.

    Lets the server learn ``sum w x`` and ``sum w`` only (a weighted mean without revealing
    any weight). Implements :class:`~secagg.primitives.encoding.VectorEncoder`.
    """

    base: VectorEncoder
    weight: FixedPointEncoder

    def __post_init__(self) -> None:
        if self.base.bits != self.weight.bits:
            raise InvalidParameterError("the weight encoder must use the base encoder's ring")

    @property
    def bits(self) -> int:
        """Bits of the ring both encoders embed into."""
        return self.base.bits

    @property
    def max_clients(self) -> int:
        """Most contributions whose sum both encoders can decode."""
        return min(self.base.max_clients, self.weight.max_clients)

    @property
    def value_bound(self) -> int:
        """Largest ring element one contribution may hold (for the packing)."""
        base = (
            self.base.levels if isinstance(self.base, FixedPointEncoder) else (1 << self.bits) - 1
        )
        return max(base, self.weight.levels)

    def encoded_length(self, d: int) -> int:
        """Ring elements for an input of ``d`` values (``d - 1`` weighted values, one weight)."""
        return self.base.encoded_length(d - 1) + 1

    def encode(self, values: npt.ArrayLike, rng: np.random.Generator | None = None) -> U64:
        """Encode ``[w x_1, ..., w x_d, w]``.

        Raises:
            InvalidParameterError: not a 1-D vector of at least two values.
            EncodingError: a value the base or the weight encoder cannot represent.
        """
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 1 or x.size < 2:
            raise InvalidParameterError("a weighted input is [w x_1, ..., w x_d, w]")
        if isinstance(self.base, FixedPointEncoder):
            head = self.base.encode(x[:-1], rng=rng)
        else:
            head = np.asarray(self.base.encode(x[:-1]), dtype=np.uint64)
        return np.concatenate([head, self.weight.encode(x[-1:], rng=rng)])

    def decode_sum(self, summed: npt.ArrayLike, n: int) -> F64:
        """Decode the sum of ``n`` encodings: ``[sum w x_1, ..., sum w x_d, sum w]``."""
        s = np.asarray(summed, dtype=np.uint64)
        return np.concatenate(
            [
                np.asarray(self.base.decode_sum(s[:-1], n), dtype=np.float64),
                self.weight.decode_sum(s[-1:], n),
            ]
        )


def packing_for(public_key: ThresholdPublicKey, encoder: VectorEncoder) -> PackingScheme:
    """The slot layout of ``encoder``'s ring elements in ``public_key``'s plaintexts."""
    if isinstance(encoder, WeightedEncoder):
        return public_key.packing(
            value_bits=encoder.bits,
            max_clients=encoder.max_clients,
            value_bound=encoder.value_bound,
        )
    return public_key.packing_for(encoder)
