"""What every privacy accountant shares: its name, its limits and the checks of its events.

* :class:`AccountantKind` names the three back ends (``pld``, ``rdp``, ``prv``);
* :data:`MAX_ACCOUNTANT_MEMORY` bounds the memory any one accountant call may use, and
  :class:`AccountantLimitError` (an :class:`~secagg.errors.InvalidParameterError`)
  refuses, before any work starts, what would exceed it;
* :func:`validate_event` checks the parameters of every event of a tree (finite,
  non-negative noise, sampling rates in ``[0, 1]``, integer counts ``>= 1``) and
  :class:`ValidatingAccountant` runs it before composing anything.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from enum import Enum

import dp_accounting
import numpy as np
import numpy.typing as npt
from dp_accounting.privacy_accountant import NeighboringRelation

from dp.events import DistributedDiscreteGaussianDpEvent, DistributedSkellamDpEvent
from secagg.errors import InvalidParameterError
from secagg.validation import is_int, is_real, require_int, require_positive

__all__ = [
    "AccountantKind",
    "AccountantLimitError",
    "CompositionErrorDetails",
    "DEFAULT_PLD_DISCRETIZATION",
    "FloatArray",
    "MAX_ACCOUNTANT_MEMORY",
    "MAX_EVENT_NODES",
    "NeighboringRelation",
    "ValidatingAccountant",
    "megabytes",
    "quiet_absl",
    "validate_distributed",
    "validate_event",
]

FloatArray = npt.NDArray[np.float64]
#: Value discretization interval of the PLD accountant unless told otherwise.
DEFAULT_PLD_DISCRETIZATION = 1e-3
#: What an accountant's ``_maybe_compose`` returns for an event it cannot handle.
CompositionErrorDetails = dp_accounting.PrivacyAccountant.CompositionErrorDetails

#: Memory any one accountant call may use, in bytes (estimated before any work is done).
MAX_ACCOUNTANT_MEMORY = 320 * 2**20
#: Nodes of an event tree an accountant walks (a ledger compresses its rounds far below).
MAX_EVENT_NODES = 100_000


class AccountantLimitError(InvalidParameterError):
    """An accountant refused work it cannot do within its memory and time bounds.

    Raised *before* the work starts; the message says what would be needed and what to
    change (another accountant, more noise, a coarser discretization, fewer orders).
    """


@contextlib.contextmanager
def quiet_absl() -> Iterator[None]:
    """Silence absl's per-order warnings (dp-accounting logs through absl) for a block."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(level)


def megabytes(nbytes: float) -> str:
    """``nbytes`` as a short human figure (``~12.3 MB``, ``~1.5 GB``) for refusal messages."""
    if nbytes >= 2**30:
        return f"~{nbytes / 2**30:.3g} GB"
    return f"~{nbytes / 2**20:.3g} MB"


class AccountantKind(str, Enum):
    """Which accountant converts a composition of events into (epsilon, delta)."""

    PLD = "pld"
    RDP = "rdp"
    PRV = "prv"

    @classmethod
    def parse(cls, value: AccountantKind | str) -> AccountantKind:
        """The accountant named by ``value`` (a member or its name, e.g. ``"pld"``).

        Raises:
            InvalidParameterError: ``value`` names no accountant; the message lists the
                allowed names.
        """
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(repr(k.value) for k in cls)
            raise InvalidParameterError(
                f"unknown accountant {value!r}; choose one of {allowed}"
            ) from None


def validate_distributed(
    event: DistributedDiscreteGaussianDpEvent | DistributedSkellamDpEvent,
) -> None:
    """Check the sensitivities, client count and dimension of a distributed event.

    Raises:
        InvalidParameterError: a sensitivity is not a positive finite number, or the
            number of clients or the dimension is not an integer ``>= 1``.
    """
    require_positive("l2_sensitivity", event.l2_sensitivity)
    require_positive("l1_sensitivity", event.l1_sensitivity)
    require_int("num_clients", event.num_clients, lo=1)
    require_int("dimension", event.dimension, lo=1)


def _finite_nonnegative(what: str, value: object, event: dp_accounting.DpEvent) -> None:
    name = type(event).__name__
    if not is_real(value):
        raise InvalidParameterError(f"{what} of {name} must be a number, got {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number) or number < 0.0:
        hint = (
            "; an event that releases nothing is NoOpDpEvent()"
            if isinstance(value, float) and value == math.inf
            else ""
        )
        raise InvalidParameterError(
            f"{what} of {name} must be a finite number >= 0, got {value!r}{hint}"
        )


def validate_event(event: dp_accounting.DpEvent) -> None:
    """Check the parameters of every event in a tree before an accountant touches it.

    Refuses what no accountant can give a meaningful answer for: non-finite or negative
    noise multipliers, sampling probabilities outside ``[0, 1]``, composition counts that
    are not integers ``>= 1`` (zero rounds release nothing: leave the event out), and trees
    of more than :data:`MAX_EVENT_NODES` nodes.

    Raises:
        InvalidParameterError: the message names the event and the bad parameter.
    """
    stack = [event]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_EVENT_NODES:
            raise AccountantLimitError(
                f"the event has more than {MAX_EVENT_NODES} nodes; compose repeated events "
                "with SelfComposedDpEvent(event, count) instead of listing them"
            )
        if not isinstance(node, dp_accounting.DpEvent):
            raise InvalidParameterError(
                f"expected a dp_accounting.DpEvent, got {type(node).__name__}"
            )
        if isinstance(node, dp_accounting.SelfComposedDpEvent):
            count = node.count
            if not is_int(count) or count < 1:
                hint = " (zero rounds release nothing: leave the event out)" if count == 0 else ""
                raise InvalidParameterError(
                    f"SelfComposedDpEvent count must be an integer >= 1, got {count!r}{hint}"
                )
            stack.append(node.event)
        elif isinstance(node, dp_accounting.ComposedDpEvent):
            if not isinstance(node.events, Sequence):
                raise InvalidParameterError("ComposedDpEvent.events must be a list of events")
            if len(node.events) > MAX_EVENT_NODES:
                raise AccountantLimitError(
                    f"ComposedDpEvent lists {len(node.events)} events, more than "
                    f"{MAX_EVENT_NODES}; compose repeated events with SelfComposedDpEvent"
                )
            stack.extend(node.events)
        elif isinstance(node, dp_accounting.PoissonSampledDpEvent):
            q = node.sampling_probability
            _finite_nonnegative("sampling_probability", q, node)
            if float(q) > 1.0:
                raise InvalidParameterError(
                    f"sampling_probability of PoissonSampledDpEvent must lie in [0, 1], got {q!r}"
                )
            stack.append(node.event)
        elif isinstance(node, dp_accounting.SampledWithoutReplacementDpEvent):
            stack.append(node.event)
        elif isinstance(node, (dp_accounting.GaussianDpEvent, dp_accounting.LaplaceDpEvent)):
            _finite_nonnegative("noise_multiplier", node.noise_multiplier, node)


class ValidatingAccountant(dp_accounting.PrivacyAccountant):  # type: ignore[misc]
    """A dp-accounting accountant that validates every event (:func:`validate_event`) first.

    The base of the three back ends: :meth:`compose` also refuses a count that is not an
    integer ``>= 1`` (dp-accounting would silently accept ``0`` or ``1.5``).
    """

    def compose(self, event: dp_accounting.DpEvent, count: int = 1) -> ValidatingAccountant:
        """Compose ``event`` ``count`` times, after checking every parameter.

        Raises:
            InvalidParameterError: an event parameter or ``count`` is out of range.
            dp_accounting.UnsupportedEventError: the accountant cannot handle (a part of)
                the event (dp-accounting's own error).
        """
        validate_event(event)
        if not is_int(count) or count < 1:
            raise InvalidParameterError(f"count must be an integer >= 1, got {count!r}")
        super().compose(event, int(count))
        return self
