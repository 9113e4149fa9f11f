"""What a simulated round is given, checked once for every protocol family.

Client ids as the protocols number them (:func:`wire_ids`), dropouts per stage
(:func:`parse_dropouts`), weights (:func:`client_weights`) and the encoders a simulated
round uses when the caller gives none (:func:`default_encoder`, :func:`weight_encoder`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

import numpy as np
import numpy.typing as npt

from protocols.parties import MAX_CLIENT_ID
from protocols.stages import Stage
from secagg.errors import InvalidParameterError
from secagg.primitives.encoding import FixedPointEncoder
from secagg.validation import is_int

__all__ = [
    "DEFAULT_BITS",
    "wire_ids",
    "WireIds",
    "parse_dropouts",
    "client_weights",
    "default_encoder",
    "weight_encoder",
    "pow2_ceiling",
]

DEFAULT_BITS = 32
"""Ring bits of the default encoder of a simulated round."""


K = TypeVar("K", int, str)
"""A caller's client id (an ``int`` or a ``str``)."""
V = TypeVar("V")


def wire_ids(updates: Mapping[K, object]) -> dict[K, int]:
    """User client id -> the protocol's id (also its Shamir evaluation point).

    Positive ints are kept; non-negative ints that include 0 (as Flower's ``partition-id``)
    are shifted by one; strings are numbered 1, 2, ... in sorted order.

    Raises:
        InvalidParameterError: ids of mixed or unsupported types, or out of range.
    """
    keys = list(updates)
    if keys and all(is_int(k) for k in keys):
        numbers = [int(k) for k in keys]
        if any(k < 0 or k >= MAX_CLIENT_ID for k in numbers):
            raise InvalidParameterError(
                f"integer client ids must lie in [0, 2^63 - 2], got {min(numbers)}..{max(numbers)}"
            )
        shift = 1 if min(numbers) == 0 else 0
        return {k: k_int + shift for k, k_int in zip(keys, numbers, strict=True)}
    if keys and all(isinstance(k, str) for k in keys):
        return {k: i + 1 for i, k in enumerate(sorted(keys, key=str))}
    raise InvalidParameterError("client ids must be all non-negative ints or all strings")


@dataclass(frozen=True)
class WireIds(Generic[K]):
    """A cohort's two numberings: the caller's client ids and the protocol's (:func:`wire_ids`).

    Attributes:
        to_wire: caller's id -> protocol id.
        from_wire: protocol id -> caller's id.
    """

    to_wire: Mapping[K, int]
    from_wire: Mapping[int, K] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "from_wire", {w: u for u, w in self.to_wire.items()})

    @classmethod
    def of(cls, updates: Mapping[K, object]) -> WireIds[K]:
        """The numbering of the cohort ``updates`` is keyed by."""
        return cls(wire_ids(updates))

    def wire(self, cid: object) -> int:
        """The protocol id of the caller's ``cid``.

        Raises:
            InvalidParameterError: ``cid`` is not in the cohort.
        """
        if cid not in self.to_wire:
            raise InvalidParameterError(f"dropout id {cid!r} is not in the cohort")
        return self.to_wire[cast(K, cid)]

    def keyed(self, values: Mapping[K, V]) -> dict[int, V]:
        """A per-client mapping keyed by protocol ids."""
        return {self.wire(c): v for c, v in values.items()}

    def per_client(self, value: V | Mapping[K, V] | None) -> V | dict[int, V] | None:
        """A per-client option keyed by protocol ids (a single value is left as it is)."""
        if isinstance(value, Mapping):
            return self.keyed(value)
        return value


def parse_dropouts(
    dropouts: Mapping[str | Stage, Iterable[int]] | None,
    *,
    stages: Iterable[Stage],
    cohort: Iterable[int],
) -> dict[Stage, frozenset[int]]:
    """Validate a ``stage name -> client ids`` mapping.

    Raises:
        InvalidParameterError: an unknown stage, a stage the round does not have, an id
            outside the cohort, or an id listed at two stages.
    """
    allowed = tuple(stages)
    members = frozenset(cohort)
    out: dict[Stage, frozenset[int]] = {}
    seen: set[int] = set()
    for key, ids in (dropouts or {}).items():
        try:
            stage = Stage(key)
        except ValueError:
            raise InvalidParameterError(
                f"unknown stage {key!r}; stages: {[s.value for s in Stage]}"
            ) from None
        if stage not in allowed:
            raise InvalidParameterError(
                f"this round has no stage {stage.value!r}; "
                f"its stages are {[s.value for s in allowed]}"
            )
        group = frozenset(int(i) for i in ids)
        if not group <= members:
            raise InvalidParameterError(
                f"dropouts name clients outside the cohort: {sorted(group - members)}"
            )
        if group & seen:
            raise InvalidParameterError(f"clients listed at two stages: {sorted(group & seen)}")
        seen |= group
        out[stage] = group
    return out


def pow2_ceiling(x: float) -> float:
    """The smallest power of two ``>= x`` (1.0 for ``x <= 0``): the default encoder bound."""
    return 1.0 if x <= 0 else float(2.0 ** math.ceil(math.log2(x)))


def default_encoder(
    vectors: Iterable[npt.NDArray[np.float64]], *, bits: int, max_clients: int
) -> FixedPointEncoder:
    """The encoder a simulated round uses when none is given.

    A :class:`~secagg.primitives.encoding.FixedPointEncoder` of ``bits`` bits on ``[-B, B]``, ``B``
    the smallest power of two bounding every coordinate of ``vectors`` (the inputs as
    masked or encrypted, so already weighted), summing up to ``max_clients`` clients.
    A simulation convenience: a deployment fixes ``B`` in advance.
    """
    bound = pow2_ceiling(max((float(np.max(np.abs(v), initial=0.0)) for v in vectors), default=0.0))
    return FixedPointEncoder.symmetric(bound, bits=bits, max_clients=max_clients)


def client_weights(weights: Mapping[int, float], ids: Iterable[int]) -> dict[int, float]:
    """Each client's weight for a weighted round, checked.

    Args:
        weights: client id -> weight.
        ids: the cohort; every id needs a weight.

    Returns:
        client id -> weight as a float, in the order of ``ids``.

    Raises:
        InvalidParameterError: a client has no weight, or a weight is not a finite,
            non-negative number.
    """
    out: dict[int, float] = {}
    for cid in ids:
        if cid not in weights:
            raise InvalidParameterError(f"no weight for client {cid}")
        try:
            w = float(weights[cid])
        except (TypeError, ValueError):
            raise InvalidParameterError(
                f"weights must be finite and non-negative, got {weights[cid]!r}"
            ) from None
        if not (math.isfinite(w) and w >= 0):
            raise InvalidParameterError(f"weights must be finite and non-negative, got {w}")
        out[cid] = w
    return out


def weight_encoder(
    weights: Mapping[int, float], *, max_weight: float | None, bits: int, max_clients: int
) -> FixedPointEncoder:
    """The encoder of the weight coordinate a weighted round appends to each input.

    It covers ``[0, max_weight]`` (default: the largest weight rounded up to a power of
    two) with ``bits`` bits for up to ``max_clients`` clients.

    Raises:
        InvalidParameterError: a weight exceeds ``max_weight``.
    """
    top = (
        float(max_weight)
        if max_weight is not None
        else pow2_ceiling(max(weights.values(), default=0.0))
    )
    if any(w > top for w in weights.values()):
        raise InvalidParameterError(f"a weight exceeds max_weight = {top}")
    return FixedPointEncoder(bits=bits, lo=0.0, hi=top, max_clients=max_clients)
