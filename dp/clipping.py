"""L2 clipping of client updates: flat, per-layer and adaptive (Andrew et al. 2021).

An *update* is a 1-D numpy vector, or a mapping (e.g. a torch state-dict delta) from
names to numpy arrays or torch tensors, or a sequence of such arrays. Clipping never
mixes representations: what comes in goes out, with the same keys, shapes and dtypes.

Flat clipping scales the whole update by ``min(1, C / ||u||_2)`` with ``||u||_2`` the
norm over all entries, so the result has norm at most ``C`` -- the L2 sensitivity of a
sum of clipped updates under adding or removing one client.

Per-layer clipping scales each layer ``l`` separately by ``min(1, C_l / ||u_l||_2)``;
the whole update then has norm at most ``sqrt(sum_l C_l^2)`` (:attr:`PerLayerClipResult.bound`).
A single total ``C`` is split evenly, ``C_l = C / sqrt(L)``.

Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy, "Differentially Private Learning
with Adaptive Clipping", NeurIPS 2021) moves the clip norm towards the ``gamma``-quantile
of the clients' update norms: each client reports ``b_i - 1/2`` with
``b_i = 1[||u_i|| <= C]`` (sensitivity 1/2), the server forms the noised fraction

    b~ = (sum_i (b_i - 1/2) + N(0, sigma_b^2)) / m + 1/2        (m: expected clients)

and updates ``C <- C exp(-eta (b~ - gamma))`` (geometric) or ``C <- C - eta (b~ - gamma)``.
The count release is a Gaussian mechanism with noise multiplier ``2 sigma_b``; composed
with the update release (noise multiplier ``z_value``) it costs as much as one Gaussian
mechanism with ``z^-2 = z_value^-2 + (2 sigma_b)^-2`` (:func:`adaptive_clip_noise_params`).
Only floating-point entries are accepted: integer entries (e.g. BatchNorm's
``num_batches_tracked``) cannot be clipped and must be removed first. Clipped leaves are
scaled slightly below ``C`` (by four units of their dtype's precision), then measured again
in float64 and shrunk by the same margin until that norm is at most ``C``: rounding in the
scale, in the cast back to the leaf's dtype or in the norm itself never leaves a clipped
update above ``C``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import dp_accounting
import numpy as np
import numpy.typing as npt

from dp.samplers import sample_gaussian
from secagg.errors import EncodingError, InvalidParameterError
from secagg.validation import require_int, require_positive, require_real

__all__ = [
    "ClipResult",
    "PerLayerClipResult",
    "UpdateLayout",
    "l2_norm",
    "clip_l2",
    "clip_per_layer",
    "flatten_update",
    "AdaptiveClipper",
    "AdaptiveClipStep",
    "adaptive_clip_noise_params",
    "clip_indicator",
]

F64 = npt.NDArray[np.float64]
U = TypeVar("U")


def _is_tensor(x: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _slack(leaves: list[Any]) -> float:
    """``1 - 4 eps`` for the coarsest dtype among the leaves."""
    eps = 2.0**-52
    for x in leaves:
        if _is_tensor(x):
            eps = max(eps, float(sys.modules["torch"].finfo(x.dtype).eps))
        else:
            eps = max(eps, float(np.finfo(np.asarray(x).dtype).eps))
    return 1.0 - 4.0 * eps


def _leaf_sq_norm(x: Any) -> float:
    """Squared L2 norm of one array or tensor, accumulated in float64."""
    if _is_tensor(x):
        torch = sys.modules["torch"]
        if not x.is_floating_point():
            raise EncodingError(
                f"cannot clip a tensor of dtype {x.dtype}; drop integer buffers "
                "(e.g. num_batches_tracked)"
            )
        t = x.detach().to(dtype=torch.float64)
        if not bool(torch.isfinite(t).all()):
            raise EncodingError("update contains NaN or infinity")
        return float((t * t).sum())
    a = np.asarray(x)
    if a.dtype.kind not in "f":
        raise EncodingError(f"cannot clip an array of dtype {a.dtype}; pass floating-point values")
    a64 = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a64)):
        raise EncodingError("update contains NaN or infinity")
    return float(np.dot(a64.ravel(), a64.ravel()))


def _leaves(update: object) -> list[Any]:
    if isinstance(update, Mapping):
        return list(update.values())
    if isinstance(update, np.ndarray) or _is_tensor(update):
        return [update]
    if isinstance(update, Sequence) and not isinstance(update, (str, bytes)):
        return list(update)
    raise EncodingError(
        f"unsupported update type {type(update).__name__}: use a numpy array, a tensor, "
        "or a mapping / sequence of them"
    )


def _scale_leaf(x: Any, factor: float) -> Any:
    if factor == 1.0:
        return x.clone() if _is_tensor(x) else np.array(x, copy=True)
    if _is_tensor(x):
        torch = sys.modules["torch"]
        return (x.detach().to(torch.float64) * factor).to(x.dtype)
    a = np.asarray(x)
    return (a.astype(np.float64) * factor).astype(a.dtype)


def _scale_within(
    leaves: list[Any], factor: float, bound: float, slack: float
) -> tuple[list[Any], float]:
    """Scale ``leaves`` by ``factor``, shrinking it until their float64 norm is ``<= bound``."""
    for _ in range(64):
        scaled = [_scale_leaf(x, factor) for x in leaves]
        if factor == 1.0 or math.sqrt(sum(_leaf_sq_norm(x) for x in scaled)) <= bound:
            return scaled, factor
        factor *= slack
    raise EncodingError(f"could not scale the update to norm {bound}")


def _rebuild(update: Any, leaves: list[Any]) -> Any:
    if isinstance(update, Mapping):
        return dict(zip(update.keys(), leaves))
    if isinstance(update, np.ndarray) or _is_tensor(update):
        return leaves[0]
    return list(leaves)


def l2_norm(update: object) -> float:
    """Global L2 norm of an update (all entries of all layers), in float64.

    Raises:
        EncodingError: non-finite values, non-floating entries or an unsupported type.
    """
    return math.sqrt(sum(_leaf_sq_norm(x) for x in _leaves(update)))


@dataclass(frozen=True)
class ClipResult(Generic[U]):
    """Outcome of flat clipping.

    Attributes:
        update: the clipped update, same structure as the input (a copy).
        norm: L2 norm of the input before clipping.
        factor: the scale applied, ``min(1, C / norm)`` (slightly below when clipped).
        clip_norm: ``C``.
    """

    update: U
    norm: float
    factor: float
    clip_norm: float

    @property
    def clipped(self) -> bool:
        """Whether the input norm exceeded the clip norm."""
        return self.factor < 1.0


def clip_l2(update: U, clip_norm: float) -> ClipResult[U]:
    """Flat L2 clipping: ``u * min(1, C / ||u||_2)`` with the norm over all entries.

    Args:
        update: 1-D/N-D numpy array, torch tensor, or a mapping / sequence of them.
        clip_norm: ``C > 0``.

    Returns:
        A :class:`ClipResult` whose ``update`` has L2 norm ``<= C``.

    Raises:
        InvalidParameterError: non-positive or non-finite ``clip_norm``.
        EncodingError: non-finite values or unsupported input.
    """
    c = require_positive("clip_norm", clip_norm)
    leaves = _leaves(update)
    norm = math.sqrt(sum(_leaf_sq_norm(x) for x in leaves))
    slack = _slack(leaves)
    scaled, factor = _scale_within(leaves, 1.0 if norm <= c else (c / norm) * slack, c, slack)
    return ClipResult(update=_rebuild(update, scaled), norm=norm, factor=factor, clip_norm=c)


@dataclass(frozen=True)
class PerLayerClipResult(Generic[U]):
    """Outcome of per-layer clipping.

    Attributes:
        update: the clipped update, same structure as the input.
        norms: each layer's norm before clipping (input order).
        factors: each layer's scale factor.
        clip_norms: each layer's clip norm ``C_l``.
    """

    update: U
    norms: tuple[float, ...]
    factors: tuple[float, ...]
    clip_norms: tuple[float, ...]

    @property
    def bound(self) -> float:
        """L2 bound of the whole clipped update, ``sqrt(sum_l C_l^2)`` (its sensitivity)."""
        return math.sqrt(sum(c * c for c in self.clip_norms))


def clip_per_layer(
    update: U, clip_norms: float | Mapping[str, float] | Sequence[float]
) -> PerLayerClipResult[U]:
    """Clip every layer to its own L2 norm.

    Args:
        update: a mapping or a sequence of arrays / tensors (one per layer).
        clip_norms: one total ``C`` (split evenly: ``C / sqrt(L)`` per layer), or one
            norm per layer (a mapping with the update's keys, or a sequence).

    Raises:
        InvalidParameterError: a missing, extra or non-positive per-layer norm.
        EncodingError: non-finite values or unsupported input.
    """
    if not isinstance(update, (Mapping, Sequence)) or isinstance(update, (str, bytes, np.ndarray)):
        raise EncodingError("per-layer clipping needs a mapping or a sequence of layers")
    leaves = _leaves(update)
    if not leaves:
        raise EncodingError("update has no layers")
    n_layers = len(leaves)
    if isinstance(clip_norms, Mapping):
        if not isinstance(update, Mapping) or set(clip_norms) != set(update):
            raise InvalidParameterError(
                "per-layer clip norms must name exactly the update's layers"
            )
        norms_c = [require_positive(f"clip_norms[{k!r}]", clip_norms[k]) for k in update]
    elif isinstance(clip_norms, Sequence):
        if len(clip_norms) != n_layers:
            raise InvalidParameterError(
                f"need {n_layers} per-layer clip norms, got {len(clip_norms)}"
            )
        norms_c = [require_positive(f"clip_norms[{i}]", c) for i, c in enumerate(clip_norms)]
    else:
        total = require_positive("clip_norms", clip_norms)
        norms_c = [total / math.sqrt(n_layers)] * n_layers
    norms = [math.sqrt(_leaf_sq_norm(x)) for x in leaves]
    slack = _slack(leaves)
    scaled: list[Any] = []
    factors: list[float] = []
    for x, n, c in zip(leaves, norms, norms_c):
        (leaf,), f = _scale_within([x], 1.0 if n <= c else (c / n) * slack, c, slack)
        scaled.append(leaf)
        factors.append(f)
    return PerLayerClipResult(
        update=_rebuild(update, scaled),
        norms=tuple(norms),
        factors=tuple(factors),
        clip_norms=tuple(norms_c),
    )


@dataclass(frozen=True)
class UpdateLayout:
    """How a structured update maps to one flat float64 vector and back.

    Attributes:
        names: the keys (mapping input) or ``"0", "1", ...`` (sequence / single array).
        shapes: each leaf's shape.
        dtypes: each leaf's dtype, as a string (numpy or torch spelling).
        kind: ``"mapping"``, ``"sequence"`` or ``"array"``.
        torch_leaves: whether the leaves were torch tensors.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    kind: str
    torch_leaves: bool

    @property
    def size(self) -> int:
        """Length of the flat vector."""
        return sum(math.prod(s) for s in self.shapes)

    def unflatten(self, vector: npt.ArrayLike) -> object:
        """Rebuild the structure from a flat vector of length :attr:`size`.

        Raises:
            EncodingError: wrong length or not one-dimensional.
        """
        v = np.asarray(vector, dtype=np.float64)
        if v.ndim != 1 or v.shape[0] != self.size:
            raise EncodingError(f"expected a vector of length {self.size}, got shape {v.shape}")
        leaves: list[Any] = []
        offset = 0
        for shape, dtype in zip(self.shapes, self.dtypes):
            n = math.prod(shape)
            part = v[offset : offset + n].reshape(shape)
            offset += n
            if self.torch_leaves:
                import torch

                leaves.append(
                    torch.from_numpy(part.copy()).to(getattr(torch, dtype.removeprefix("torch.")))
                )
            else:
                leaves.append(part.astype(np.dtype(dtype)))
        if self.kind == "mapping":
            return dict(zip(self.names, leaves))
        if self.kind == "array":
            return leaves[0]
        return leaves


def flatten_update(update: object) -> tuple[F64, UpdateLayout]:
    """Concatenate an update's leaves (in order) into one float64 vector.

    Returns:
        ``(vector, layout)``; ``layout.unflatten(vector)`` rebuilds the structure.

    Raises:
        EncodingError: non-finite or non-floating entries, or an unsupported type.
    """
    leaves = _leaves(update)
    parts: list[F64] = []
    shapes: list[tuple[int, ...]] = []
    dtypes: list[str] = []
    torch_leaves = bool(leaves) and _is_tensor(leaves[0])
    for x in leaves:
        if _is_tensor(x) != torch_leaves:
            raise EncodingError("an update mixes torch tensors and numpy arrays")
        _leaf_sq_norm(x)  # validates dtype and finiteness
        if torch_leaves:
            arr = x.detach().cpu().double().numpy()
            dtypes.append(str(x.dtype))
        else:
            arr = np.asarray(x, dtype=np.float64)
            dtypes.append(str(np.asarray(x).dtype))
        shapes.append(tuple(int(s) for s in arr.shape))
        parts.append(arr.ravel())
    if isinstance(update, Mapping):
        kind, names = "mapping", tuple(str(k) for k in update.keys())
    elif isinstance(update, np.ndarray) or _is_tensor(update):
        kind, names = "array", ("0",)
    else:
        kind, names = "sequence", tuple(str(i) for i in range(len(leaves)))
    vector = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)
    layout = UpdateLayout(
        names=names,
        shapes=tuple(shapes),
        dtypes=tuple(dtypes),
        kind=kind,
        torch_leaves=torch_leaves,
    )
    return vector, layout


def clip_indicator(norm: float, clip_norm: float) -> float:
    """A client's report for adaptive clipping: ``+1/2`` if ``norm <= C`` else ``-1/2``."""
    return 0.5 if float(norm) <= float(clip_norm) else -0.5


def adaptive_clip_noise_params(
    noise_multiplier: float, expected_clients: int, count_stddev: float | None = None
) -> tuple[float, float]:
    """Split a total noise multiplier between the update and the clipped-count release.

    Andrew et al. (2021, Theorem 1): releasing the sum of updates with noise multiplier
    ``z_value`` and the count with noise ``sigma_b`` (sensitivity 1/2) costs as much as
    one Gaussian mechanism with ``z^-2 = z_value^-2 + (2 sigma_b)^-2``. So

        z_value = (z^-2 - (2 sigma_b)^-2)^(-1/2).

    Args:
        noise_multiplier: the total ``z > 0``.
        expected_clients: ``m``; the default ``sigma_b = m / 20`` follows the paper.
        count_stddev: ``sigma_b``; must satisfy ``2 sigma_b > z``.

    Returns:
        ``(z_value, sigma_b)``.
    """
    z = require_positive("noise_multiplier", noise_multiplier)
    if not isinstance(expected_clients, int) or expected_clients < 1:
        raise InvalidParameterError("expected_clients must be a positive int")
    sb = (
        0.05 * expected_clients
        if count_stddev is None
        else require_positive("count_stddev", count_stddev)
    )
    if 2 * sb <= z:
        raise InvalidParameterError(
            f"count noise too small: need 2 * count_stddev > noise_multiplier ({2 * sb} <= {z}); "
            "raise count_stddev or lower the noise multiplier"
        )
    return (z**-2 - (2 * sb) ** -2) ** -0.5, sb


@dataclass(frozen=True)
class AdaptiveClipStep:
    """One update of the adaptive clip norm.

    Attributes:
        previous_clip: the clip norm used in this round.
        clip_norm: the clip norm for the next round.
        noised_fraction: ``b~``, the noised fraction of clients that were not clipped.
        event: the DP event of the count release (``GaussianDpEvent(2 sigma_b)``, or
            ``NonPrivateDpEvent`` without noise).
    """

    previous_clip: float
    clip_norm: float
    noised_fraction: float
    event: dp_accounting.DpEvent


class AdaptiveClipper:
    """Clip norm that tracks a target quantile of update norms (Andrew et al. 2021).

    Args:
        initial_clip: starting clip norm ``C_0``.
        target_quantile: ``gamma`` in ``[0, 1]``: the fraction of clients that should end
            up unclipped.
        learning_rate: ``eta`` (default 0.2, the paper's choice for the geometric rule).
        count_stddev: ``sigma_b``, the Gaussian noise on the sum of indicators (default
            ``expected_clients / 20``); 0 disables noise (not private).
        expected_clients: ``m``, the public expected number of reports per round.
        geometric: geometric (default) or linear update.

    The noise is drawn here, by the party that learns the count (the server, trusted for
    this count); with secure aggregation, sum the clients' :func:`clip_indicator` values
    through the protocol and pass the sum to :meth:`update`.
    """

    def __init__(
        self,
        *,
        initial_clip: float,
        target_quantile: float,
        expected_clients: int,
        learning_rate: float = 0.2,
        count_stddev: float | None = None,
        geometric: bool = True,
    ) -> None:
        self._clip = require_positive("initial_clip", initial_clip)
        self.target_quantile = require_real("target_quantile", target_quantile, lo=0.0, hi=1.0)
        self.expected_clients = require_int("expected_clients", expected_clients, lo=1)
        self.learning_rate = require_positive("learning_rate", learning_rate)
        if count_stddev is None:
            count_stddev = 0.05 * expected_clients
        self.count_stddev = require_real("count_stddev", count_stddev, lo=0.0)
        self.geometric = bool(geometric)

    @property
    def clip_norm(self) -> float:
        """The clip norm clients should use this round."""
        return self._clip

    @property
    def count_event(self) -> dp_accounting.DpEvent:
        """The DP event of one count release."""
        if self.count_stddev == 0:
            return dp_accounting.NonPrivateDpEvent()
        return dp_accounting.GaussianDpEvent(noise_multiplier=2.0 * self.count_stddev)

    def update(self, indicator_sum: float, *, seed: bytes | None = None) -> AdaptiveClipStep:
        """Move the clip norm after a round.

        Args:
            indicator_sum: ``sum_i (b_i - 1/2)`` over the round's clients (the sum of
                their :func:`clip_indicator` reports).
            seed: PRG key for reproducible tests only.

        Returns:
            The :class:`AdaptiveClipStep` (also applied to this object).
        """
        s = float(indicator_sum)
        if not math.isfinite(s):
            raise InvalidParameterError("indicator_sum must be finite")
        noise = (
            float(sample_gaussian(self.count_stddev, 1, seed=seed)[0]) if self.count_stddev else 0.0
        )
        fraction = (s + noise) / self.expected_clients + 0.5
        previous = self._clip
        step = self.learning_rate * (fraction - self.target_quantile)
        new = previous * math.exp(-step) if self.geometric else max(previous - step, 1e-12)
        self._clip = new
        return AdaptiveClipStep(
            previous_clip=previous, clip_norm=new, noised_fraction=fraction, event=self.count_event
        )
