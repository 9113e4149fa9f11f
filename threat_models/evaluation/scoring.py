"""Scoring reconstructions the same way in every cell: verdicts, PSNR rows, privacy, panels.

:func:`target_leaked` is the one verdict rule of every row that attacks several targets
(:data:`VERDICT_RULE`): the attacker's best target decides, for defended rows and positive
controls alike, so no average can hide one leaked target. :func:`gradient_rows` turns the
PSNRs of an image-reconstruction attack into the rows of the matrix (the best target's
PSNR, the mean, images at 20 and 30 dB against what the data set's mean image gets for
free, the images attacked, a random image's PSNR, label accuracy) by that rule.
:func:`gaussian_privacy` states the epsilon of a row under Gaussian noise.
:func:`panel` and :func:`matched_panel` keep what the report's image grids show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from dp.accountants.pld import gaussian_epsilon
from secagg.errors import InvalidParameterError, raise_missing_extra
from threat_models.attacks.metrics import (
    EXACT_DB,
    RECOGNISABLE_DB,
    Baselines,
    Matching,
    psnr_matrix,
)
from threat_models.data import Activation, ImageData, num_parameters
from threat_models.evaluation.rows import Family, ImagePanel, PrivacyLevel, Protection, Row

try:
    import torch
    from torch import nn
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.evaluation")

__all__ = [
    "PANEL_LIMIT",
    "DELTA",
    "VERDICT_RULE",
    "best_target_db",
    "target_leaked",
    "RowPrivacy",
    "gaussian_privacy",
    "describe",
    "pick",
    "image_psnr",
    "gradient_rows",
    "panel",
    "matched_panel",
]

#: Images shown per panel of the report.
PANEL_LIMIT = 8

#: The delta at which every row under DP noise states its epsilon.
DELTA = 1e-5

#: The verdict rule of every row that attacks several targets, in words (the report's).
VERDICT_RULE = (
    "a row that attacks several targets (images, clients) takes its value and its verdict "
    "from the attacker's best target: it succeeds when at least one target is reconstructed "
    f"at PSNR >= {RECOGNISABLE_DB:g} dB, for defended rows and positive controls alike, so "
    "no average over targets can hide a leaked one"
)


def best_target_db(psnrs: Sequence[float]) -> float:
    """The PSNR of the attacker's best target (the row's value under :data:`VERDICT_RULE`).

    Raises:
        InvalidParameterError: no target was attacked.
    """
    values = np.asarray(psnrs, dtype=np.float64)
    if values.size == 0:
        raise InvalidParameterError("a row needs at least one attacked target")
    return float(values.max())


def target_leaked(psnrs: Sequence[float]) -> bool:
    """The verdict of :data:`VERDICT_RULE`: whether the best target is recognisable."""
    return best_target_db(psnrs) >= RECOGNISABLE_DB


@dataclass(frozen=True)
class RowPrivacy:
    """The privacy a row under DP noise corresponds to.

    Attributes:
        epsilon: at ``delta``, for one unit of ``level``, over ``releases``.
        delta: the delta of ``epsilon``.
        level: whose privacy ``epsilon`` bounds.
        noise_multiplier: ``z`` of each release (noise std over the clipping norm).
        releases: noised releases of the unit that the attack observes.
    """

    epsilon: float
    delta: float
    level: PrivacyLevel
    noise_multiplier: float
    releases: int

    def apply(self, row: Row) -> Row:
        """``row`` stating this epsilon, delta and level."""
        return replace(
            row,
            epsilon=self.epsilon,
            delta=self.delta,
            epsilon_level=self.level,
            noise_multiplier=self.noise_multiplier,
        )


def gaussian_privacy(
    noise_multiplier: float,
    releases: int = 1,
    *,
    delta: float = DELTA,
    level: PrivacyLevel = PrivacyLevel.USER,
) -> RowPrivacy:
    """Epsilon of ``releases`` Gaussian releases with noise multiplier ``noise_multiplier``.

    Each release adds Gaussian noise of std ``z C`` to a sum in which the unit contributes
    at most ``C`` in L2 norm; no sampling, so no amplification (the attacker knows who took
    part). ``k`` such releases compose exactly into one Gaussian of multiplier
    ``z / sqrt(k)`` (Gaussian DP, Dong, Roth and Su 2019), whose epsilon at ``delta`` is
    :func:`dp.accountants.pld.gaussian_epsilon` (exact, add-or-remove-one neighbours;
    about a millisecond). Distributed discrete Gaussian noise is accounted as the
    continuous Gaussian of the same std (the discrete one's own accountant differs by the
    rounding only).

    Raises:
        InvalidParameterError: a non-positive multiplier or release count.
    """
    if not noise_multiplier > 0 or not math.isfinite(noise_multiplier):
        raise InvalidParameterError("noise_multiplier must be positive and finite")
    if int(releases) != releases or releases < 1:
        raise InvalidParameterError("releases must be a positive integer")
    epsilon = gaussian_epsilon(noise_multiplier / math.sqrt(releases), delta)
    return RowPrivacy(epsilon, delta, level, float(noise_multiplier), int(releases))


def describe(model: nn.Module, data: ImageData, activation: Activation, hidden: int) -> str:
    """The setting of a cell: data set, the MLP's shape and activation, its parameter count."""
    shape = f"{data.input_size}-{hidden}-{data.num_classes}"
    return f"{data.name.value}, MLP {shape} {activation.value}, P={num_parameters(model)}"


def pick(
    data: ImageData, count: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` distinct images of ``data`` and their labels, drawn with ``rng``."""
    idx = torch.as_tensor(rng.choice(len(data), size=count, replace=False))
    return data.images[idx], data.labels[idx]


def image_psnr(reconstruction: torch.Tensor, original: torch.Tensor) -> float:
    """PSNR (dB) of one reconstruction against one original."""
    return float(psnr_matrix(reconstruction, original)[0, 0])


def gradient_rows(
    *,
    attack: str,
    defense: str,
    setting: str,
    psnrs: Sequence[float],
    base: Baselines,
    expected: bool | None,
    protection: Protection,
    positive_control: bool = False,
    label_acc: float | None = None,
    note: str = "",
    multi: bool = False,
    family: Family = Family.GRADIENT_INVERSION,
    privacy: RowPrivacy | None = None,
) -> list[Row]:
    """The rows of one image-reconstruction attack against one defense.

    Every row carries the verdict of :func:`target_leaked` (:data:`VERDICT_RULE`: the best
    target decides), whatever the defense and whether or not it is a positive control.

    Args:
        psnrs: per attacked image, the PSNR of its reconstruction.
        base: what an attacker gets for free (the data set's mean image, a random image).
        multi: a multi-image attack: the primary row counts images at 20 dB instead of
            showing the best target's PSNR.
        label_acc: label accuracy of the attack, when it infers labels.
        privacy: the epsilon of the defense's DP noise (``None``: no DP noise).

    The other arguments are the :class:`~threat_models.evaluation.rows.Row` fields every
    row of the attack shares.
    """
    values = np.asarray(psnrs, dtype=np.float64)
    free = base.dataset_mean_each_db
    best = Row(
        family=family,
        attack=attack,
        defense=defense,
        setting=setting,
        metric="best_psnr_db",
        value=best_target_db(psnrs),
        baseline=max(free) if free else base.dataset_mean_db,
        baseline_name="dataset_mean_best_psnr_db",
        succeeded=target_leaked(psnrs),
        threshold=RECOGNISABLE_DB,
        expected=expected,
        positive_control=positive_control,
        primary=not multi,
        note="; ".join(
            part
            for part in (note, f"best of {values.size} targets" if values.size > 1 else "")
            if part
        ),
        protection=protection,
    )
    if privacy is not None:
        best = privacy.apply(best)
    mean = replace(
        best,
        metric="psnr_db",
        value=float(values.mean()),
        baseline=base.dataset_mean_db,
        baseline_name="dataset_mean_psnr_db",
        primary=False,
        note=f"mean over {values.size} targets",
        threshold=None,  # the verdict is the best target's, not a threshold on the mean
    )
    rows = [
        best,
        mean,
        replace(
            mean,
            metric="images_above_20db",
            value=float(np.sum(values >= RECOGNISABLE_DB)),
            baseline=float(base.free_count_above(RECOGNISABLE_DB)),
            baseline_name="dataset_mean_images_above_20db",
            threshold=1.0,  # one image at 20 dB is the best target at 20 dB
            primary=multi,
            note=f"of {values.size} images" + (f"; {note}" if note else ""),
        ),
        replace(
            mean,
            metric="images_above_30db",
            value=float(np.sum(values >= EXACT_DB)),
            baseline=float(base.free_count_above(EXACT_DB)),
            baseline_name="dataset_mean_images_above_30db",
            primary=False,
            note=f"of {values.size} images",
        ),
        replace(
            mean,
            metric="images_attacked",
            value=float(values.size),
            baseline=None,
            baseline_name="",
            primary=False,
            note="",
        ),
        replace(
            mean,
            metric="random_image_psnr_db",
            value=base.random_image_db,
            baseline=None,
            baseline_name="",
            primary=False,
            note="",
        ),
    ]
    if label_acc is not None:
        rows.append(
            replace(
                mean,
                metric="label_accuracy",
                value=label_acc,
                baseline=0.1,
                baseline_name="chance",
                primary=False,
                note="",
            )
        )
    return rows


def panel(
    name: str,
    title: str,
    originals: torch.Tensor,
    recon: torch.Tensor,
    psnrs: Sequence[float] | npt.NDArray[np.float64],
) -> ImagePanel:
    """The first :data:`PANEL_LIMIT` originals and reconstructions (clamped to [0, 1])."""
    limit = PANEL_LIMIT
    return ImagePanel(
        name,
        title,
        originals[:limit].detach().clone(),
        recon[:limit].detach().clamp(0, 1).clone(),
        tuple(float(p) for p in list(psnrs)[:limit]),
    )


def matched_panel(
    name: str, title: str, originals: torch.Tensor, candidates: torch.Tensor, match: Matching
) -> ImagePanel:
    """A panel of matched candidates: a blank image, marked unmatched, where there is none.

    A blank rather than a stand-in (e.g. the data set's mean image): a picture shown above
    a "0 dB" label would contradict it.
    """
    blank = torch.zeros_like(originals[0])
    shown = panel(name, title, originals, match.ordered(candidates, blank), match.psnr_db)
    unmatched = tuple(bool(i < 0) for i in match.candidate_index.tolist()[:PANEL_LIMIT])
    return replace(shown, unmatched=unmatched)
