"""The recipe's choices and its own errors: protocol, differential privacy, verification.

The choices are enums (a string naming a member is accepted wherever one is, and
:func:`coerce` turns it into the member or an :class:`~secagg.errors.InvalidParameterError`
listing the choices). The errors subclass the library's: a client outside the population
and a missing DP-SGD record are misuse (:class:`~secagg.errors.InvalidParameterError`), a
sampled cohort too small to aggregate is a threshold not met
(:class:`~secagg.errors.ThresholdNotMetError`).
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from protocols.options import ProtocolName
from secagg.errors import InvalidParameterError, ThresholdNotMetError

__all__ = [
    "AggregationProtocol",
    "ClientId",
    "ClientNotInPopulationError",
    "CohortTooSmallError",
    "DPMode",
    "MissingLocalDpError",
    "NoisyAggregateWarning",
    "VerifyMode",
    "coerce",
]

ClientId = str | int
"""A client's id in the recipe: a str or an int (distinct also as strings)."""

AggregationProtocol = ProtocolName
"""The recipe's name for :class:`protocols.options.ProtocolName`, the one protocol enum.

``secagg``: complete-graph masking (Bonawitz et al., CCS 2017). ``secagg+``: masking over
a sparse random graph derived from the threat model (Bell et al., CCS 2020); cost per
client grows like ``log n``. ``paillier``: packed threshold Paillier with a decryption
committee (no single party can decrypt).
"""

_E = TypeVar("_E", bound=Enum)


class DPMode(str, Enum):
    """Where differential privacy noise comes from (see :mod:`secagg.recipe`)."""

    NONE = "none"
    CENTRAL = "central"
    DISTRIBUTED = "distributed"
    LOCAL = "local"

    @property
    def user_level(self) -> bool:
        """Whether the aggregate itself carries user-level noise."""
        return self in (DPMode.CENTRAL, DPMode.DISTRIBUTED)


class VerifyMode(str, Enum):
    """What ``verify`` computes on the side (in the simulation, from the clients' inputs).

    ``off``: nothing. ``protocol``: the largest difference between the secure aggregate and
    the plaintext sum of the very encodings that entered the protocol (noised as they
    were) -- zero up to float rounding when the protocol is correct, so it says nothing
    about the data. ``unsafe-plaintext``: also the distance between the released aggregate
    and the *un-noised* sum of the clipped updates. That number is computed from the exact
    sum, is itself a release about the clients' data, and is **not** covered by the privacy
    ledger: keep it on the trusted side, never publish it.
    """

    OFF = "off"
    PROTOCOL = "protocol"
    UNSAFE_PLAINTEXT = "unsafe-plaintext"


class ClientNotInPopulationError(InvalidParameterError):
    """An update names a client that is not a member of the population."""


class CohortTooSmallError(ThresholdNotMetError):
    """The sampled cohort of this round is too small to aggregate; the round was skipped.

    Raised after the round was charged to the ledger (the sampler's law includes small
    cohorts, so the accounting includes their rounds); no aggregate is released.
    """


class MissingLocalDpError(InvalidParameterError):
    """With ``dp="local"``, a client of the round comes without its DP-SGD record."""


class NoisyAggregateWarning(UserWarning):
    """The noise the privacy target needs swamps the signal of the mean."""


def coerce(enum: type[_E], value: object, what: str) -> _E:
    """The member of ``enum`` that ``value`` is or names.

    Raises:
        InvalidParameterError: ``value`` names no member; the message lists the choices.
    """
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in enum)
        raise InvalidParameterError(f"unknown {what} {value!r}; choose one of {choices}") from None
