"""Image grids of the report: every label is the PSNR of the picture it sits under."""

from __future__ import annotations

from pathlib import Path

import torch

from threat_models.attacks.metrics import match_reconstructions
from threat_models.evaluation import ImagePanel
from threat_models.evaluation.report import NO_CANDIDATE, image_labels, save_image_grid
from threat_models.evaluation.scoring import matched_panel


def _digits(count: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(count, 1, 8, 8, generator=generator)


def _db(label: str) -> float:
    return float(label.removesuffix(" dB"))


def test_a_matching_reconstruction_is_labelled_high_and_an_empty_one_low(tmp_path: Path) -> None:
    originals = _digits(2)
    shown = torch.stack([originals[0], torch.zeros_like(originals[1])])
    # the cell's own scores are deliberately wrong: the labels must come from the pictures
    panel = ImagePanel("p", "test", originals, shown, (0.0, 100.0))
    exact, empty = image_labels(panel)
    assert _db(exact) >= 90.0
    assert _db(empty) < 10.0
    assert save_image_grid(panel, tmp_path / "grid.png").read_bytes().startswith(b"\x89PNG")


def test_an_original_without_a_candidate_is_blank_and_says_so() -> None:
    originals = _digits(3)
    candidates = originals[[2, 0]].clone()  # the attack found two of the three
    match = match_reconstructions(candidates, originals)
    panel = matched_panel("trap", "trap weights", originals, candidates, match)
    assert panel.unmatched == (False, True, False)
    assert torch.count_nonzero(panel.reconstructions[1]) == 0
    labels = image_labels(panel)
    assert labels[1] == NO_CANDIDATE
    assert _db(labels[0]) >= 90.0 and _db(labels[2]) >= 90.0
