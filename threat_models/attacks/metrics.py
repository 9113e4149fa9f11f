"""Metrics for attacks: reconstruction quality, matching, baselines, ROC curves.

Reconstruction quality follows the conventions of the ``breaching`` framework:

* PSNR in dB for images in ``[0, 1]``: ``PSNR = 10 log10(1 / MSE)``, capped at
  :data:`PSNR_CAP_DB` so that an exact recovery (MSE = 0) is a finite number;
* when an attack returns several candidates for several originals, the candidates are
  *matched* to the originals first (Hungarian assignment maximising the total PSNR),
  and each original is scored against its matched candidate (an original without one
  scores 0 dB);
* thresholds: above 20 dB a digit is recognisable, above 30 dB it is visually exact;
* SSIM (:func:`ssim`, Wang et al. 2004) beside PSNR: structure rather than pixel error.

Every number is reported next to two baselines an attacker gets for free: the PSNR of
the data set's mean image and the PSNR of a random *other* image of the data set.

Membership inference is scored with the ROC curve of the attack's scores: AUC, and the
true-positive rate at a low false-positive rate (Carlini et al. 2022, "Membership
Inference Attacks From First Principles").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter
from scipy.optimize import linear_sum_assignment

from secagg.errors import InvalidParameterError, raise_missing_extra

try:
    import torch
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.attacks.metrics")

__all__ = [
    "PSNR_CAP_DB",
    "RECOGNISABLE_DB",
    "EXACT_DB",
    "Baselines",
    "Matching",
    "RocCurve",
    "psnr",
    "psnr_matrix",
    "SSIM_WINDOW",
    "SSIM_SIGMA",
    "ssim",
    "ssim_matrix",
    "match_reconstructions",
    "baselines",
    "roc_curve",
    "negatives_needed",
    "signal_to_noise",
]

F64 = npt.NDArray[np.float64]

PSNR_CAP_DB = 100.0
"""Largest reported PSNR; float32 round-off alone gives about 140 dB."""
RECOGNISABLE_DB = 20.0
EXACT_DB = 30.0


def _flat(images: torch.Tensor) -> torch.Tensor:
    if images.ndim < 1:
        raise InvalidParameterError("images need at least one dimension")
    return images.detach().to(torch.float64).reshape(images.shape[0], -1)


def psnr_matrix(candidates: torch.Tensor, originals: torch.Tensor) -> F64:
    """PSNR (dB, capped) of every candidate against every original.

    Args:
        candidates: ``(M, ...)`` images in ``[0, 1]`` (values outside are clamped first,
            as any attacker who knows the data range would).
        originals: ``(N, ...)`` images with the same per-image shape.

    Returns:
        ``(M, N)`` float64 array.
    """
    cand = _flat(candidates).clamp(0.0, 1.0)
    orig = _flat(originals)
    if cand.shape[1] != orig.shape[1]:
        raise InvalidParameterError(f"image sizes differ: {cand.shape[1]} vs {orig.shape[1]}")
    mse = torch.cdist(cand, orig).pow(2) / cand.shape[1]
    mse_np = mse.numpy()
    with np.errstate(divide="ignore"):
        values = -10.0 * np.log10(np.maximum(mse_np, 0.0))
    return np.asarray(np.minimum(values, PSNR_CAP_DB), dtype=np.float64)


def psnr(candidate: torch.Tensor, original: torch.Tensor) -> float:
    """PSNR (dB, capped) of one image against another of the same shape."""
    if candidate.shape != original.shape:
        raise InvalidParameterError(
            f"shapes differ: {tuple(candidate.shape)} vs {tuple(original.shape)}"
        )
    return float(psnr_matrix(candidate.reshape(1, -1), original.reshape(1, -1))[0, 0])


SSIM_WINDOW = 11
"""Side of SSIM's Gaussian window (Wang et al. 2004), shrunk on smaller images."""
SSIM_SIGMA = 1.5
"""Standard deviation of SSIM's Gaussian window at :data:`SSIM_WINDOW`."""


def _grey(image: torch.Tensor) -> F64:
    """One image as a 2-D float64 array (channels averaged); ``(H, W)`` or ``(1.., C, H, W)``."""
    arr = image.detach().to(torch.float64)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3:
        arr = arr.mean(dim=0)
    if arr.ndim != 2:
        raise InvalidParameterError(f"expected one image, got shape {tuple(image.shape)}")
    return np.asarray(arr.numpy(), dtype=np.float64)


def ssim(candidate: torch.Tensor, original: torch.Tensor, *, data_range: float = 1.0) -> float:
    """Structural similarity of one image against another (Wang et al. 2004), in ``[-1, 1]``.

    The standard Gaussian-window SSIM for grey images: local means, variances and the
    covariance under a Gaussian window of side 11 and std 1.5 (population moments),
    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2`` with ``L = data_range``, and the mean of the
    SSIM map. The candidate is clamped to ``[0, data_range]`` first, as for PSNR.

    Small images: on an image whose shorter side ``s`` is below 11 the window shrinks to
    the largest odd side ``w <= s`` (7 on 8x8 digits) and its std by the same factor
    (``1.5 w / 11``); the filter is truncated at 3.5 std, reflected at the borders
    (scikit-image's ``gaussian_weights=True`` filter), and the map is averaged over every
    pixel. scikit-image crops ``(w - 1) / 2`` pixels off each border before averaging,
    which on an 8x8 digit would keep only its 2x2 centre; the mean of the full map is that
    of ``structural_similarity(..., full=True)``'s map.

    Args:
        candidate: ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)``; channels are averaged.
        original: the same shape.
        data_range: ``L``, the span of pixel values (1 for images in ``[0, 1]``).
    """
    if candidate.shape != original.shape:
        raise InvalidParameterError(
            f"shapes differ: {tuple(candidate.shape)} vs {tuple(original.shape)}"
        )
    if not data_range > 0 or not math.isfinite(data_range):
        raise InvalidParameterError("data_range must be positive and finite")
    x = np.clip(_grey(candidate), 0.0, data_range)
    y = _grey(original)
    side = min(x.shape)
    window = min(SSIM_WINDOW, side if side % 2 == 1 else side - 1)
    if window < 3:
        raise InvalidParameterError("SSIM needs images of at least 3x3 pixels")
    sigma = SSIM_SIGMA * window / SSIM_WINDOW

    def blur(a: F64) -> F64:
        return np.asarray(gaussian_filter(a, sigma, mode="reflect", truncate=3.5))

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(np.mean(smap))


def ssim_matrix(candidates: torch.Tensor, originals: torch.Tensor) -> F64:
    """:func:`ssim` of every candidate ``(M, C, H, W)`` against every original ``(N, C, H, W)``."""
    out = np.zeros((int(candidates.shape[0]), int(originals.shape[0])), dtype=np.float64)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = ssim(candidates[i], originals[j])
    return out


@dataclass(frozen=True)
class Matching:
    """Candidates matched one-to-one to originals.

    Attributes:
        psnr_db: per original, the PSNR of its matched candidate (0 when unmatched).
        candidate_index: per original, the index of its candidate, or -1.
    """

    psnr_db: F64
    candidate_index: npt.NDArray[np.int64]

    @property
    def mean_psnr(self) -> float:
        return float(np.mean(self.psnr_db))

    def fraction_above(self, threshold_db: float) -> float:
        return float(np.mean(self.psnr_db >= threshold_db))

    def count_above(self, threshold_db: float) -> int:
        return int(np.sum(self.psnr_db >= threshold_db))

    def ordered(self, candidates: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
        """The matched candidate of each original, ``fill`` where there is none (image grids)."""
        rows = [
            candidates[i].detach().clamp(0.0, 1.0) if i >= 0 else fill.reshape(candidates.shape[1:])
            for i in self.candidate_index.tolist()
        ]
        return torch.stack(rows)


def match_reconstructions(candidates: torch.Tensor, originals: torch.Tensor) -> Matching:
    """Hungarian assignment of candidates to originals maximising total PSNR.

    With fewer candidates than originals some originals stay unmatched and score 0 dB;
    extra candidates are simply unused (an attacker may output many guesses, but each
    original is credited with one).
    """
    if candidates.shape[0] == 0:
        n = int(originals.shape[0])
        return Matching(np.zeros(n), np.full(n, -1, dtype=np.int64))
    scores = psnr_matrix(candidates, originals)
    rows, cols = linear_sum_assignment(scores, maximize=True)
    n = int(originals.shape[0])
    out = np.zeros(n)
    idx = np.full(n, -1, dtype=np.int64)
    out[cols] = scores[rows, cols]
    idx[cols] = rows
    return Matching(out, idx)


@dataclass(frozen=True)
class Baselines:
    """What an attacker gets without any attack, in mean PSNR over the originals.

    Attributes:
        dataset_mean_db: PSNR of the data set's pixel-wise mean image.
        random_image_db: PSNR of a random *other* image from the data set.
        dataset_mean_each_db: per original, the PSNR of the mean image.
    """

    dataset_mean_db: float
    random_image_db: float
    dataset_mean_each_db: tuple[float, ...] = ()

    def free_count_above(self, threshold_db: float) -> int:
        """Originals that the mean image alone already matches at ``threshold_db``."""
        return sum(v >= threshold_db for v in self.dataset_mean_each_db)

    @property
    def best_db(self) -> float:
        return max(self.dataset_mean_db, self.random_image_db)


def baselines(originals: torch.Tensor, pool: torch.Tensor, *, seed: int = 0) -> Baselines:
    """Free baselines for ``originals`` drawn from the data set ``pool``.

    The random-image baseline averages over several draws per original, excluding exact
    copies of the original itself.
    """
    mean = pool.mean(dim=0, keepdim=True)
    each = psnr_matrix(mean, originals)[0]
    mean_db = float(np.mean(each))
    rng = np.random.default_rng(seed)
    draws = rng.choice(pool.shape[0], size=min(64, pool.shape[0]), replace=False)
    scores = psnr_matrix(pool[torch.as_tensor(draws)], originals)
    scores = np.where(scores >= PSNR_CAP_DB, np.nan, scores)
    random_db = float(np.nanmean(scores))
    return Baselines(mean_db, random_db, tuple(float(v) for v in each))


@dataclass(frozen=True)
class RocCurve:
    """ROC curve of a membership score (higher score = "member").

    Attributes:
        fpr: false-positive rates, increasing from 0 to 1.
        tpr: true-positive rates at the same thresholds.
        positives: members the curve was measured on (0 when not recorded).
        negatives: non-members the curve was measured on (0 when not recorded).
    """

    fpr: F64
    tpr: F64
    positives: int = 0
    negatives: int = 0

    @property
    def auc(self) -> float:
        return float(np.trapezoid(self.tpr, self.fpr))

    def tpr_at_fpr(self, fpr: float) -> float:
        """Largest TPR reachable with a false-positive rate of at most ``fpr``."""
        ok = self.fpr <= fpr + 1e-12
        return float(self.tpr[ok].max()) if np.any(ok) else 0.0

    def false_positives_allowed(self, fpr: float) -> int:
        """False positives a threshold at ``fpr`` may make: ``floor(fpr * negatives)``.

        0 means :meth:`tpr_at_fpr` at this rate is the TPR at *zero* false positives: the
        curve has too few non-members to resolve ``fpr``.
        """
        return math.floor(fpr * self.negatives + 1e-9)

    def resolves_fpr(self, fpr: float) -> bool:
        """Whether the curve rests on enough non-members (:func:`negatives_needed`) for
        ``fpr`` to allow at least one false positive."""
        return self.negatives >= negatives_needed(fpr)


def negatives_needed(fpr: float) -> int:
    """Non-members an ROC needs for a false-positive rate of ``fpr`` to allow one false
    positive: ``ceil(1 / fpr)`` (1,000 at 0.1% FPR, 100 at 1%)."""
    if not 0 < fpr <= 1:
        raise InvalidParameterError("fpr must be in (0, 1]")
    return math.ceil(1.0 / fpr - 1e-9)


def roc_curve(scores: npt.ArrayLike, is_member: npt.ArrayLike) -> RocCurve:
    """ROC curve of ``scores`` for the boolean labels ``is_member``.

    Ties between scores are resolved as one threshold step (a diagonal segment), so the
    AUC equals the Mann-Whitney U statistic.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(is_member, dtype=bool).ravel()
    if s.shape != y.shape or s.size == 0:
        raise InvalidParameterError("scores and labels must be non-empty and of equal length")
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise InvalidParameterError("need both members and non-members")
    if not np.all(np.isfinite(s)):
        raise InvalidParameterError("scores must be finite")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / positives]
    fpr = np.r_[0.0, fps / negatives]
    return RocCurve(fpr.astype(np.float64), tpr.astype(np.float64), positives, negatives)


def signal_to_noise(signal: torch.Tensor | F64, noise_std: float) -> float:
    """Signal-to-noise ratio of an update with i.i.d. Gaussian noise of std ``noise_std`` each.

    ``SNR = ||g||_2 / E||n||_2 ~= ||g||_2 / (sigma sqrt(d))``: the ratio of the update's norm
    to the noise vector's norm. It, not sigma alone, decides whether an inversion attack
    can see the update (an SNR near 0.1 leaves nothing recognisable).
    """
    if noise_std < 0 or not math.isfinite(noise_std):
        raise InvalidParameterError("noise_std must be a finite non-negative number")
    if isinstance(signal, torch.Tensor):
        norm = float(signal.detach().to(torch.float64).norm())
        d = int(signal.numel())
    else:
        arr = np.asarray(signal, dtype=np.float64)
        norm = float(np.linalg.norm(arr))
        d = int(arr.size)
    if noise_std == 0:
        return math.inf
    return norm / (noise_std * math.sqrt(d))
