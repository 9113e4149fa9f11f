"""Privacy-utility curves: the points of each family with DP rows, the figures, the edge."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from threat_models.evaluation.curves import (
    NO_DP_LABEL,
    CurvePoint,
    curve_file_name,
    curve_lines,
    curves_json,
    no_dp_position,
    privacy_utility_figure,
    privacy_utility_points,
    save_privacy_utility_figures,
)
from threat_models.evaluation.rows import Family, PrivacyLevel, Protection, Row


def _row(family: Family, attack: str, epsilon: float | None, value: float, **kw: object) -> Row:
    fields: dict[str, object] = {
        "family": family,
        "attack": attack,
        "defense": "none" if epsilon is None else f"DP eps {epsilon:g}",
        "setting": "s",
        "metric": "best_psnr_db",
        "value": value,
        "baseline": 11.0,
        "baseline_name": "dataset mean",
        "succeeded": value >= 20.0,
        "expected": None,
        "protection": Protection.NONE if epsilon is None else Protection.DP,
        "epsilon": epsilon,
        "delta": None if epsilon is None else 1e-5,
        "epsilon_level": None if epsilon is None else PrivacyLevel.USER,
        "noise_multiplier": None if epsilon is None else 1.0,
        "threshold": 20.0,
        "accuracy": 0.95 if epsilon is None else 0.5 + 0.01 * epsilon,
    }
    fields.update(kw)
    return Row(**fields)  # type: ignore[arg-type]


def _xy(line: Line2D) -> tuple[list[float], list[float]]:
    xs = np.asarray(line.get_xdata(), dtype=np.float64)
    ys = np.asarray(line.get_ydata(), dtype=np.float64)
    return [float(x) for x in xs], [float(y) for y in ys]


def _rows() -> tuple[Row, ...]:
    gi = Family.GRADIENT_INVERSION
    return (
        _row(gi, "dlg", None, 40.0),
        _row(gi, "dlg", 3.0, 12.0, ci_low=10.0, ci_high=14.0, seeds=3),
        _row(gi, "dlg", 30.0, 25.0),
        _row(gi, "dlg", 30.0, 25.0, metric="psnr_db", primary=False),  # not a curve point
        _row(gi, "closed_form", 300.0, 35.0),
        # a family without any DP row: no curve
        _row(Family.PROTOCOL_LEVEL, "replay", None, 1.0, metric="recovered", threshold=None),
    )


def test_points_per_family_from_the_primary_rows() -> None:
    points = privacy_utility_points(_rows())
    assert list(points) == [Family.GRADIENT_INVERSION]
    gi = points[Family.GRADIENT_INVERSION]
    assert [(p.attack, p.epsilon, p.value) for p in gi] == [
        ("dlg", None, 40.0),
        ("dlg", 3.0, 12.0),
        ("dlg", 30.0, 25.0),
        ("closed_form", 300.0, 35.0),
    ]
    assert gi[1].ci_low == 10.0 and gi[1].ci_high == 14.0 and gi[1].threshold == 20.0
    assert gi[0].accuracy == 0.95 and gi[0].baseline == 11.0


def test_the_json_carries_the_same_numbers() -> None:
    doc = curves_json(_rows())
    assert list(doc) == ["gradient_inversion"]
    first = doc["gradient_inversion"][1]
    for key in ("attack", "defense", "epsilon", "metric", "value", "threshold", "accuracy"):
        assert key in first
    assert (first["epsilon"], first["ci_low"], first["ci_high"]) == (3.0, 10.0, 14.0)
    assert doc["gradient_inversion"][0]["epsilon"] is None
    json.dumps(doc)  # JSON-able as it is


def test_a_png_for_a_family_with_dp_rows_and_none_without(tmp_path: Path) -> None:
    written = save_privacy_utility_figures(_rows(), tmp_path)
    assert set(written) == {Family.GRADIENT_INVERSION}
    path = tmp_path / curve_file_name(Family.GRADIENT_INVERSION)
    assert written[Family.GRADIENT_INVERSION] == path
    assert path.name == "privacy_utility_gradient_inversion.png"
    assert path.stat().st_size > 1000 and path.read_bytes().startswith(b"\x89PNG")
    assert not (tmp_path / curve_file_name(Family.PROTOCOL_LEVEL)).exists()
    # the same protocol rows with one DP row do get a curve (the rule is "any DP row")
    dp = _row(Family.PROTOCOL_LEVEL, "replay", 2.0, 0.0, metric="recovered", threshold=None)
    assert Family.PROTOCOL_LEVEL in save_privacy_utility_figures((*_rows(), dp), tmp_path)


def test_the_no_dp_point_sits_at_the_right_edge() -> None:
    edge = no_dp_position([3.0, 30.0, 300.0, None])
    assert edge == 10_000.0 and no_dp_position([None]) == 1.0
    assert no_dp_position([3.0, math.inf]) == 100.0 and no_dp_position([1000.0]) == 10_000.0
    points = privacy_utility_points(_rows())[Family.GRADIENT_INVERSION]
    fig = privacy_utility_figure(Family.GRADIENT_INVERSION, points)
    metric_ax, accuracy_ax = fig.axes[0], fig.axes[1]
    dlg = next(line for line in metric_ax.get_lines() if line.get_label() == "dlg")
    xs, ys = _xy(dlg)
    assert xs == [3.0, 30.0, edge] and ys == [12.0, 25.0, 40.0]  # no DP last, at the edge
    assert max(xs) > max(p.epsilon for p in points if p.epsilon is not None)
    labels = [t.get_text() for t in metric_ax.get_xticklabels()]
    assert labels[-1] == NO_DP_LABEL
    assert metric_ax.get_xticks()[-1] == edge
    acc_x, acc_y = _xy(accuracy_ax.get_lines()[0])
    assert acc_x[-1] == edge and acc_y[-1] == 0.95
    # the success threshold is drawn as a dashed line at 20 dB
    dashed = [ln for ln in metric_ax.get_lines() if ln.get_linestyle() == "--"]
    assert [_xy(ln)[1] for ln in dashed] == [[20.0, 20.0]]


def test_an_attack_met_by_two_kinds_of_dp_defence_is_two_lines() -> None:
    fam = Family.MODEL_LEVEL
    rows = [
        _row(fam, "Sybil", None, 100.0),
        _row(fam, "Sybil", 30.0, 25.0, protection=Protection.SECURE_AGGREGATION_DP),
        _row(fam, "Sybil", 300.0, 40.0, protection=Protection.SECURE_AGGREGATION_DP),
        _row(fam, "Sybil", 30.0, 12.0, protection=Protection.DP),
        _row(fam, "Sybil", 300.0, 14.0, protection=Protection.DP),
    ]
    points = [CurvePoint.of(r) for r in rows]
    edge = no_dp_position([p.epsilon for p in points])
    lines = curve_lines(points, edge)
    assert len(lines) == 2
    for label, line in lines:
        assert label.startswith("Sybil (")
        assert [p.epsilon for p in line] == [30.0, 300.0, None]  # ends at the no-DP point
        assert len({p.protection for p in line if p.epsilon is not None}) == 1
    # control: one kind of DP defence is one line through every point of the attack
    single = [p for p in points if p.protection != Protection.DP.value]
    assert [len(line) for _, line in curve_lines(single, edge)] == [3]


def test_only_attacks_and_metrics_met_by_dp_noise_are_drawn() -> None:
    fam = Family.MODEL_LEVEL
    rows = [
        _row(fam, "swept", None, 100.0),
        _row(fam, "swept", 30.0, 12.0),
        _row(fam, "swept", 3.0, 10.0),
        _row(fam, "control only", None, 90.0),
        _row(fam, "swept", None, 1.0, metric="round_aborted"),
    ]
    points = [CurvePoint.of(r) for r in rows]
    fig = privacy_utility_figure(fam, points)
    axes = fig.get_axes()
    assert len(axes) == 2  # best_psnr_db and accuracy: round_aborted has no DP point
    legend = axes[0].get_legend()
    assert legend is not None
    labels = [text.get_text() for text in legend.get_texts()]
    assert "swept" in labels and "control only" not in labels
    # control: with a DP point the same attack draws its line
    rows.append(_row(fam, "control only", 30.0, 15.0))
    fig = privacy_utility_figure(fam, [CurvePoint.of(r) for r in rows])
    legend = fig.get_axes()[0].get_legend()
    assert legend is not None
    assert "control only" in [text.get_text() for text in legend.get_texts()]
