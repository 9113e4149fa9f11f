"""From the clients' structured updates to the protocol's rows, and back.

A round takes ``client id -> update`` (a torch state-dict delta, a dict or list of numpy
arrays or tensors, or one array). :func:`split_updates` checks the ids,
:func:`flatten_updates` turns the updates into one float64 matrix (row ``i`` for the
``i``-th client) after checking that they share a structure, :func:`clip_rows` applies the
L2 clip (the DP sensitivity) or the range check, and :func:`rebuild_like` gives the
aggregate the structure of the first update. :func:`update_weights` and
:func:`map_dropouts` translate the per-client options of a round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from dp.clipping import UpdateLayout, clip_l2, flatten_update
from secagg.errors import EncodingError, InvalidParameterError
from secagg.recipe.options import ClientId

__all__ = [
    "clip_rows",
    "flatten_updates",
    "map_dropouts",
    "population_ids",
    "rebuild_like",
    "split_updates",
    "update_weights",
]

F64 = npt.NDArray[np.float64]
_K = TypeVar("_K", bound=ClientId)
_U = TypeVar("_U")
_S = TypeVar("_S")


def _check_ids(ids: Sequence[object]) -> None:
    # a client id is a Python str or int (numpy integers are not ids: they print alike
    # but would be stored as other objects)
    for cid in ids:
        if not isinstance(cid, (str, int)) or isinstance(cid, bool):
            raise InvalidParameterError(f"client ids must be str or int, got {cid!r}")


def split_updates(
    updates: Mapping[_K, _U] | Sequence[_U],
) -> tuple[list[ClientId], list[_U]]:
    """The ids and the updates of a round, in order (a list's ids are ``0..n-1``).

    Raises:
        InvalidParameterError: not a mapping or a list, an id that is not a str or an int,
            or two ids equal as strings.
    """
    ids: list[ClientId]
    if isinstance(updates, Mapping):
        ids = list(updates.keys())
        items = [updates[c] for c in updates.keys()]
    elif isinstance(updates, Sequence) and not isinstance(updates, (str, bytes)):
        items = list(updates)
        ids = list(range(len(items)))
    else:
        raise InvalidParameterError(
            "updates must map client ids to updates, or be a list of updates"
        )
    _check_ids(ids)
    if len({str(c) for c in ids}) != len(ids):
        raise InvalidParameterError("client ids must be distinct (also as strings)")
    return ids, items


def population_ids(clients: Iterable[object], population: int) -> frozenset[ClientId]:
    """The ``population`` distinct ids of the population's members.

    Raises:
        InvalidParameterError: a string instead of a collection, an id that is not a str or
            an int, or not exactly ``population`` ids distinct as strings.
    """
    if isinstance(clients, (str, bytes)):
        raise InvalidParameterError("client_ids must be a collection of ids, not a string")
    ids = list(clients)
    _check_ids(ids)
    if len(ids) != population or len({str(c) for c in ids}) != population:
        raise InvalidParameterError(f"expected the {population} distinct ids of the population")
    return frozenset(c for c in ids if isinstance(c, (str, int)))


def _key_difference(first: Mapping[object, object], other: Mapping[object, object]) -> str:
    """What sets ``other``'s keys apart from ``first``'s, for an error message."""
    missing = [k for k in first if k not in other]
    extra = [k for k in other if k not in first]
    parts = []
    if missing:
        parts.append(f"missing keys {missing!r}")
    if extra:
        parts.append(f"extra keys {extra!r}")
    return ", ".join(parts) or "different keys"


def _layout_difference(expected: UpdateLayout, got: UpdateLayout) -> str:
    """What sets the layout ``got`` apart from ``expected``, for an error message."""
    if got.kind != expected.kind:
        return f"a {got.kind} instead of a {expected.kind}"
    if len(got.shapes) != len(expected.shapes):
        return f"{len(got.shapes)} leaves instead of {len(expected.shapes)}"
    what = "key" if expected.kind == "mapping" else "leaf"
    shapes = [
        f"{what} {name!r} has shape {g} instead of {e}"
        for name, e, g in zip(expected.names, expected.shapes, got.shapes)
        if e != g
    ]
    return "; ".join(shapes) or "different leaves"


def flatten_updates(ids: Sequence[ClientId], items: Sequence[object]) -> tuple[F64, UpdateLayout]:
    """One float64 row per update, and the layout that rebuilds the first one.

    A mapping's keys name its leaves: every mapping is read in the first update's key
    order, so the same keys in another order are the same structure.

    Raises:
        InvalidParameterError: an update whose structure (keys, number of leaves, shapes)
            differs from the first one's, or empty updates.
        EncodingError: a leaf that is not a finite floating array.
    """
    vectors: list[F64] = []
    layout: UpdateLayout | None = None
    first = items[0] if items else None
    for cid, item in zip(ids, items):
        if isinstance(first, Mapping) and isinstance(item, Mapping) and item is not first:
            if item.keys() != first.keys():
                raise InvalidParameterError(
                    f"the update of client {cid!r} has a different structure: "
                    f"{_key_difference(first, item)}"
                )
            item = {k: item[k] for k in first}
        vector, this_layout = flatten_update(item)
        if layout is None:
            layout = this_layout
        elif (this_layout.names, this_layout.shapes, this_layout.kind) != (
            layout.names,
            layout.shapes,
            layout.kind,
        ):
            raise InvalidParameterError(
                f"the update of client {cid!r} has a different structure: "
                f"{_layout_difference(layout, this_layout)}"
            )
        vectors.append(vector)
    matrix = np.stack(vectors) if vectors else np.zeros((0, 0))
    if layout is None or matrix.shape[1] == 0:
        raise InvalidParameterError("updates are empty")
    return matrix, layout


def clip_rows(matrix: F64, clip_norm: float | None, value_bound: float) -> int:
    """Clip every row to L2 norm ``clip_norm`` in place; returns how many it shrank.

    Without a clip norm, only check that no coordinate exceeds ``value_bound``.

    Raises:
        EncodingError: no clip norm and a coordinate beyond ``value_bound`` (never a
            silent wrap).
    """
    if clip_norm is not None:
        shrunk = 0
        for i in np.flatnonzero(np.linalg.norm(matrix, axis=1) > clip_norm):
            result = clip_l2(matrix[i], clip_norm)
            matrix[i] = result.update
            shrunk += int(result.clipped)
        return shrunk
    if matrix.size and float(np.max(np.abs(matrix))) > value_bound:
        raise EncodingError(
            f"an update has a coordinate beyond value_bound={value_bound}; "
            "raise value_bound or set clip_norm"
        )
    return 0


def rebuild_like(update: object, result: object) -> object:
    """Give ``result`` (rebuilt from a layout) the keys and leaf types of ``update``.

    A mapping keeps the update's own keys (the layout spells them as strings) and a sequence
    of Python floats comes back as Python floats rather than 0-d arrays.
    """
    if isinstance(update, Mapping) and isinstance(result, dict):
        return {
            k: float(v) if type(update[k]) is float else v
            for k, v in zip(update.keys(), result.values())
        }
    if (
        isinstance(result, list)
        and isinstance(update, Sequence)
        and not isinstance(update, Mapping)
    ):
        return [float(v) if type(u) is float else v for u, v in zip(update, result)]
    return result


def update_weights(
    weights: Mapping[_K, float] | Sequence[float], ids: Sequence[ClientId], max_weight: float
) -> F64:
    """The weights of a weighted mean, one per client of ``ids``, in that order.

    Raises:
        InvalidParameterError: not exactly one weight per client, or a weight that is not
            a finite number in ``(0, max_weight]``.
    """
    if isinstance(weights, Mapping):
        missing = [c for c in ids if c not in weights]
        if missing or len(weights) != len(ids):
            raise InvalidParameterError("weights must give exactly one weight per client")
        values = [weights[c] for c in ids]  # type: ignore[index]
    else:
        values = list(weights)
        if len(values) != len(ids):
            raise InvalidParameterError(f"expected {len(ids)} weights, got {len(values)}")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidParameterError("weights must be numbers") from None
    if not np.all(np.isfinite(array)) or np.any(array <= 0) or np.any(array > max_weight):
        raise InvalidParameterError(
            f"weights must be finite, positive and at most max_weight={max_weight}"
        )
    return array


def map_dropouts(
    dropouts: Mapping[_S, Iterable[_K]] | None, protocol_ids: Mapping[ClientId, int]
) -> dict[str, list[int]] | None:
    """Simulated dropouts per protocol stage, with the protocol's client ids.

    Raises:
        InvalidParameterError: not a mapping, or a client that sent no update.
    """
    if dropouts is None:
        return None
    if not isinstance(dropouts, Mapping):
        raise InvalidParameterError("dropouts must map protocol stages to client ids")
    mapped: dict[str, list[int]] = {}
    for stage, clients in dropouts.items():
        key = str(getattr(stage, "value", stage))
        pids = []
        for cid in clients:
            if cid not in protocol_ids:
                raise InvalidParameterError(f"dropouts names client {cid!r}, which sent no update")
            pids.append(protocol_ids[cid])
        mapped[key] = pids
    return mapped
