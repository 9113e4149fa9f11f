"""Scoring reconstructions the same way in every cell: PSNR rows and image panels.

:func:`gradient_rows` turns the PSNRs of an image-reconstruction attack into the rows of
the matrix (mean PSNR, images at 20 and 30 dB against what the data set's mean image gets
for free, the images attacked, a random image's PSNR, label accuracy), by the success
criteria stated once in :mod:`threat_models.evaluation`. :func:`panel` and
:func:`matched_panel` keep what the report's image grids show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from secagg.errors import raise_missing_extra
from threat_models.attacks.metrics import (
    EXACT_DB,
    RECOGNISABLE_DB,
    Baselines,
    Matching,
    psnr_matrix,
)
from threat_models.data import Activation, ImageData, num_parameters
from threat_models.evaluation.rows import Family, ImagePanel, Protection, Row

try:
    import torch
    from torch import nn
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.evaluation")

__all__ = [
    "PANEL_LIMIT",
    "describe",
    "pick",
    "image_psnr",
    "gradient_rows",
    "panel",
    "matched_panel",
]

#: Images shown per panel of the report.
PANEL_LIMIT = 8


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
    succeeded: bool,
    expected: bool | None,
    protection: Protection,
    positive_control: bool = False,
    label_acc: float | None = None,
    note: str = "",
    multi: bool = False,
    family: Family = Family.GRADIENT_INVERSION,
) -> list[Row]:
    """The rows of one image-reconstruction attack against one defense.

    Args:
        psnrs: per attacked image, the PSNR of its reconstruction.
        base: what an attacker gets for free (the data set's mean image, a random image).
        multi: a multi-image attack: the primary row counts images at 20 dB instead of
            showing the mean PSNR.
        label_acc: label accuracy of the attack, when it infers labels.

    The other arguments are the :class:`~threat_models.evaluation.rows.Row` fields every
    row of the attack shares.
    """
    values = np.asarray(psnrs, dtype=np.float64)
    mean = Row(
        family=family,
        attack=attack,
        defense=defense,
        setting=setting,
        metric="psnr_db",
        value=float(values.mean()),
        baseline=base.dataset_mean_db,
        baseline_name="dataset_mean_psnr_db",
        succeeded=succeeded,
        expected=expected,
        positive_control=positive_control,
        primary=not multi,
        note=note,
        protection=protection,
    )
    rows = [
        mean,
        replace(
            mean,
            metric="images_above_20db",
            value=float(np.sum(values >= RECOGNISABLE_DB)),
            baseline=float(base.free_count_above(RECOGNISABLE_DB)),
            baseline_name="dataset_mean_images_above_20db",
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
