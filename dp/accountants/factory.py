"""Choosing an accountant and asking it once: :func:`make_accountant`, :func:`compute_epsilon`.

:func:`make_accountant` builds a fresh accountant of a :class:`~dp.accountants.base.AccountantKind`;
:func:`compute_epsilon` and :func:`compute_delta` compose one event and convert it in one
call, after checking that the accountant supports every part of the event
(:func:`check_supported`, which raises :class:`~secagg.errors.UnsupportedEventError`
naming the part it cannot handle). :func:`rdp_curve` returns the RDP curve itself, which
composes by addition.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence

import dp_accounting
import numpy as np

from dp.accountants.base import (
    DEFAULT_PLD_DISCRETIZATION,
    AccountantKind,
    FloatArray,
    NeighboringRelation,
    validate_event,
)
from dp.accountants.pld import PldAccountant
from dp.accountants.prv import PrvAccountant
from dp.accountants.rdp import RdpAccountant, check_user_orders
from dp.event_json import event_key
from secagg.errors import InvalidParameterError, SecAggError, UnsupportedEventError
from secagg.validation import require_positive, require_real

__all__ = [
    "check_supported",
    "compute_delta",
    "compute_epsilon",
    "make_accountant",
    "rdp_curve",
    "supports",
]


def make_accountant(
    kind: AccountantKind | str = AccountantKind.PLD,
    *,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
    pld_discretization: float = DEFAULT_PLD_DISCRETIZATION,
    rdp_orders: Sequence[float] | None = None,
) -> dp_accounting.PrivacyAccountant:
    """A fresh accountant of the given kind.

    Args:
        kind: ``pld``, ``rdp`` or ``prv``.
        neighboring_relation: the neighbouring relation of the DP guarantee (add/remove
            one record -- one user, for user-level DP -- by default).
        pld_discretization: value discretization interval of the PLD. dp-accounting
            discretizes pessimistically, so every interval gives an upper bound; smaller
            is tighter and slower (the default ``1e-3`` is within about ``1e-4`` of
            ``1e-4`` in epsilon and several times faster).
        rdp_orders: RDP orders (default: dp-accounting's).

    Returns:
        A ``dp_accounting.PrivacyAccountant``.
    """
    kind = AccountantKind.parse(kind)
    if kind is AccountantKind.PLD:
        require_positive("pld_discretization", pld_discretization)
        return PldAccountant(
            neighboring_relation=neighboring_relation,
            value_discretization_interval=pld_discretization,
        )
    if kind is AccountantKind.RDP:
        orders = None if rdp_orders is None else check_user_orders(rdp_orders)
        return RdpAccountant(orders=orders, neighboring_relation=neighboring_relation)
    return PrvAccountant(neighboring_relation)


def _unsupported(
    accountant: dp_accounting.PrivacyAccountant, kind: AccountantKind, event: dp_accounting.DpEvent
) -> UnsupportedEventError | None:
    validate_event(event)
    try:
        details = accountant._maybe_compose(event, 1, False)
    except SecAggError:
        raise
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidParameterError(f"malformed event {event!r}: {exc}") from exc
    if details is None:
        return None
    bad = details.invalid_event
    name = type(bad).__name__ if bad is not None else type(event).__name__
    return UnsupportedEventError(
        f"the {kind.value} accountant cannot handle {name} ({bad!r}): {details.error_message}"
    )


def supports(
    event: dp_accounting.DpEvent,
    kind: AccountantKind | str = AccountantKind.PLD,
    *,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
) -> bool:
    """Whether the accountant of ``kind`` can handle ``event``."""
    kind = AccountantKind.parse(kind)
    acc = make_accountant(kind, neighboring_relation=neighboring_relation)
    return _unsupported(acc, kind, event) is None


def check_supported(
    event: dp_accounting.DpEvent,
    kind: AccountantKind | str = AccountantKind.PLD,
    *,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
) -> None:
    """Raise :class:`~secagg.errors.UnsupportedEventError` (naming the event) unless supported.

    Only the structure and the parameters are checked; nothing is computed.
    """
    if not isinstance(event, dp_accounting.DpEvent):
        raise InvalidParameterError(f"expected a dp_accounting.DpEvent, got {type(event).__name__}")
    kind = AccountantKind.parse(kind)
    error = _unsupported(
        make_accountant(kind, neighboring_relation=neighboring_relation), kind, event
    )
    if error is not None:
        raise error


#: Composed PLD accountants kept, by their parts (a ledger asks again after every round
#: for the same composition plus the new round's mechanism).
_PLD_COMPOSITIONS = 64
_pld_compositions: OrderedDict[tuple[object, ...], dp_accounting.PrivacyAccountant] = (
    OrderedDict()
)


def _pld_incremental(
    event: dp_accounting.ComposedDpEvent,
    neighboring_relation: NeighboringRelation,
    pld_discretization: float,
) -> dp_accounting.PrivacyAccountant:
    """The PLD accountant of a composition, built on the cached one missing one of its parts.

    Composition is commutative, so a composition is keyed by the sorted canonical keys of
    its parts (:func:`dp.event_json.event_key`: everything the mechanism is). When the
    same parts but one were composed before, that accountant is copied (PLDs are
    immutable: composing makes a new one) and the missing part composed onto it: one
    convolution per new round instead of the whole history again. The answer is the same
    composition, up to the order of dp-accounting's (pessimistic) tail truncations.
    """
    parts = list(event.events)
    try:
        keys = [event_key(part) for part in parts]
    except InvalidParameterError:  # a class with no canonical form: composed directly
        direct = make_accountant(
            AccountantKind.PLD,
            neighboring_relation=neighboring_relation,
            pld_discretization=pld_discretization,
        )
        direct.compose(event)
        return direct
    order = sorted(range(len(parts)), key=lambda i: keys[i])
    sorted_keys = tuple(keys[i] for i in order)
    ident: tuple[object, ...] = (neighboring_relation, float(pld_discretization), sorted_keys)
    cached = _pld_compositions.get(ident)
    if cached is not None:
        _pld_compositions.move_to_end(ident)
        return copy.copy(cached)  # the caller's to compose further without touching the cache
    acc: dp_accounting.PrivacyAccountant | None = None
    for position, index in enumerate(order):
        smaller = sorted_keys[:position] + sorted_keys[position + 1 :]
        base = _pld_compositions.get(
            (neighboring_relation, float(pld_discretization), smaller)
        )
        if base is not None:
            acc = copy.copy(base)
            acc.compose(parts[index])
            break
    if acc is None:
        acc = make_accountant(
            AccountantKind.PLD,
            neighboring_relation=neighboring_relation,
            pld_discretization=pld_discretization,
        )
        acc.compose(event)
    _pld_compositions[ident] = acc
    while len(_pld_compositions) > _PLD_COMPOSITIONS:
        _pld_compositions.popitem(last=False)
    return copy.copy(acc)


def _composed(
    event: dp_accounting.DpEvent,
    kind: AccountantKind | str,
    neighboring_relation: NeighboringRelation,
    pld_discretization: float,
    rdp_orders: Sequence[float] | None,
) -> dp_accounting.PrivacyAccountant:
    if not isinstance(event, dp_accounting.DpEvent):
        raise InvalidParameterError(f"expected a dp_accounting.DpEvent, got {type(event).__name__}")
    kind = AccountantKind.parse(kind)
    acc = make_accountant(
        kind,
        neighboring_relation=neighboring_relation,
        pld_discretization=pld_discretization,
        rdp_orders=rdp_orders,
    )
    error = _unsupported(acc, kind, event)
    if error is not None:
        raise error
    try:
        if (
            kind is AccountantKind.PLD
            and isinstance(event, dp_accounting.ComposedDpEvent)
            and len(event.events) > 1
        ):
            return _pld_incremental(event, neighboring_relation, pld_discretization)
        acc.compose(event)
    except SecAggError:
        raise
    except (ValueError, TypeError, ZeroDivisionError, OverflowError) as exc:
        raise InvalidParameterError(f"cannot account for {event!r}: {exc}") from exc
    return acc


def compute_epsilon(
    event: dp_accounting.DpEvent,
    delta: float,
    *,
    accountant: AccountantKind | str = AccountantKind.PLD,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
    pld_discretization: float = DEFAULT_PLD_DISCRETIZATION,
    rdp_orders: Sequence[float] | None = None,
) -> float:
    """Smallest epsilon such that ``event`` is (epsilon, delta)-DP, per the accountant.

    Args:
        event: the composed mechanism (any structure of ``Composed``/``SelfComposed``/
            ``PoissonSampled`` events).
        delta: target delta in ``(0, 1)``.
        accountant: ``pld``, ``rdp`` or ``prv``.
        neighboring_relation: neighbouring relation of the guarantee.
        pld_discretization: PLD value discretization interval.
        rdp_orders: RDP orders for the ``rdp`` accountant.

    Returns:
        epsilon (``inf`` for a non-private event).

    Raises:
        UnsupportedEventError: the accountant cannot handle (a part of) the event; the
            message names the offending event.
        InvalidParameterError: ``delta`` or an event parameter is out of range.
    """
    delta = require_real("delta", delta, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    acc = _composed(event, accountant, neighboring_relation, pld_discretization, rdp_orders)
    try:
        eps = float(acc.get_epsilon(float(delta)))
    except SecAggError:
        raise
    except (ValueError, RuntimeError, FloatingPointError) as exc:
        raise InvalidParameterError(f"cannot compute epsilon for delta={delta}: {exc}") from exc
    return max(0.0, eps)


def compute_delta(
    event: dp_accounting.DpEvent,
    epsilon: float,
    *,
    accountant: AccountantKind | str = AccountantKind.PLD,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
    pld_discretization: float = DEFAULT_PLD_DISCRETIZATION,
    rdp_orders: Sequence[float] | None = None,
) -> float:
    """Smallest delta such that ``event`` is (epsilon, delta)-DP, per the accountant.

    Same arguments and errors as :func:`compute_epsilon`, with ``epsilon >= 0``.
    """
    epsilon = require_real("epsilon", epsilon, lo=0.0)
    acc = _composed(event, accountant, neighboring_relation, pld_discretization, rdp_orders)
    try:
        value = float(acc.get_delta(float(epsilon)))
    except SecAggError:
        raise
    except (ValueError, RuntimeError, FloatingPointError) as exc:
        raise InvalidParameterError(f"cannot compute delta for epsilon={epsilon}: {exc}") from exc
    return min(1.0, max(0.0, value))


def rdp_curve(
    event: dp_accounting.DpEvent,
    *,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
    rdp_orders: Sequence[float] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """``(orders, rdp)`` of ``event`` under the ``rdp`` accountant.

    RDP composes by addition, so curves of many rounds can be built by summing these
    vectors and converted with :func:`rdp_to_epsilon`.
    """
    acc = _composed(
        event, AccountantKind.RDP, neighboring_relation, DEFAULT_PLD_DISCRETIZATION, rdp_orders
    )
    return np.asarray(acc.orders, dtype=np.float64), np.asarray(acc.rdp, dtype=np.float64)
