"""Image grids of the report: every label is the PSNR of the picture it sits under."""

from __future__ import annotations

from pathlib import Path

import torch

from threat_models.attacks.metrics import match_reconstructions
from threat_models.evaluation import ImagePanel
from threat_models.evaluation.context import EvaluationConfig
from threat_models.evaluation.curves import CURVES_GUIDE
from threat_models.evaluation.matrix import EvaluationResult
from threat_models.evaluation.report import (
    NO_CANDIDATE,
    image_labels,
    markdown_report,
    save_image_grid,
    write_report,
)
from threat_models.evaluation.rows import Family, PrivacyLevel, Protection, Row
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


def _psnr_row(family: Family, epsilon: float | None, value: float) -> Row:
    return Row(
        family=family,
        attack="dlg",
        defense="none" if epsilon is None else f"DP eps {epsilon:g}",
        setting="s",
        metric="best_psnr_db",
        value=value,
        baseline=11.0,
        baseline_name="dataset mean",
        succeeded=value >= 20.0,
        expected=None,
        protection=Protection.NONE if epsilon is None else Protection.DP,
        epsilon=epsilon,
        delta=None if epsilon is None else 1e-5,
        epsilon_level=None if epsilon is None else PrivacyLevel.USER,
        threshold=20.0,
        accuracy=0.9,
    )


def test_the_report_links_a_curve_per_family_with_dp_rows(tmp_path: Path) -> None:
    rows = (
        _psnr_row(Family.GRADIENT_INVERSION, None, 40.0),
        _psnr_row(Family.GRADIENT_INVERSION, 2.0, 12.0),
        _psnr_row(Family.MODEL_LEVEL, None, 100.0),  # no DP row in this family: no curve
    )
    result = EvaluationResult(EvaluationConfig(quick=True), rows, (), (), {}, "sum")
    text = write_report(result, tmp_path).read_text()
    png = tmp_path / "privacy_utility_gradient_inversion.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    assert not (tmp_path / "privacy_utility_malicious_server_model.png").exists()
    assert "## Privacy-utility curves" in text and CURVES_GUIDE in text
    assert "](privacy_utility_gradient_inversion.png)" in text
    assert "privacy_utility_malicious_server_model" not in text
    # without a curve there is no section
    assert "Privacy-utility curves" not in markdown_report(result)
