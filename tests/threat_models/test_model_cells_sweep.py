"""The distributed-DP sweep of the malicious-server model attacks: one curve per attack.

Each model-level attack meets distributed DP at several target SNRs. The checks here are
what makes those rows a privacy-utility curve: at least two DP points per defence with
distinct epsilons, epsilon falling with the SNR, the attack no better under the strongest
noise than under the weakest, the claimed level keeping its expectation, and labels that
do not depend on the seed (so the rows merge across seeds). Each check is a function that
lists the problems it finds, and each is shown catching a deliberately broken curve.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

import pytest
import torch

from threat_models.evaluation import model_cells as mc
from threat_models.evaluation.context import EvaluationConfig, EvaluationContext
from threat_models.evaluation.rows import Family, Protection, Row
from threat_models.evaluation.seeds import ROW_KEY

torch.set_num_threads(1)

CELLS = (
    mc.cell_model_inconsistency,
    mc.cell_sybil,
    mc.cell_trap_weights,
    mc.cell_disaggregation,
)
#: The level at which each attack's DP row states its claim, and that claim.
CLAIMS = {
    "model inconsistency": {Protection.SECURE_AGGREGATION_DP: (0.1, False)},
    "Sybil": {Protection.SECURE_AGGREGATION_DP: (0.3, True), Protection.DP: (0.3, False)},
    "trap/imprint weights": {Protection.SECURE_AGGREGATION_DP: (0.1, False)},
    "disaggregation across rounds": {Protection.SECURE_AGGREGATION_DP: (0.1, False)},
}
_SNR = re.compile(r"SNR ([0-9.]+)")


def _run(seed: int) -> list[Row]:
    ctx = EvaluationContext(EvaluationConfig(quick=True, seed=seed))
    return [row for cell in CELLS for row in cell(ctx).rows]


@pytest.fixture(scope="module")
def runs() -> dict[int, list[Row]]:
    return {seed: _run(seed) for seed in (0, 1)}


def _snr(row: Row) -> float:
    """The target SNR a DP row names (in its setting or its defence; the same in both)."""
    found = {float(m) for m in _SNR.findall(f"{row.defense}; {row.setting}")}
    assert len(found) == 1, row
    return found.pop()


def _curves(rows: Sequence[Row]) -> dict[tuple[str, Protection], list[Row]]:
    """The primary DP rows of each (attack, defence kind), from weak noise to strong."""
    out: dict[tuple[str, Protection], list[Row]] = {}
    for row in rows:
        if row.primary and row.epsilon is not None:
            out.setdefault((row.attack, row.protection), []).append(row)
    return {key: sorted(mine, key=_snr, reverse=True) for key, mine in out.items()}


def _best(rows: Sequence[Row], point: Row) -> Row:
    """The best-target PSNR row of the same attack, defence and setting as ``point``."""
    (best,) = [
        r
        for r in rows
        if r.metric == "best_psnr_db"
        and (r.attack, r.defense, r.setting) == (point.attack, point.defense, point.setting)
    ]
    return best


def curve_problems(rows: Sequence[Row]) -> list[str]:
    """What keeps the DP rows of ``rows`` from being one privacy-utility curve per defence."""
    problems: list[str] = []
    curves = _curves(rows)
    for attack, claims in CLAIMS.items():
        for protection, (claim, expected) in claims.items():
            points = curves.get((attack, protection), [])
            name = f"{attack} / {protection.value}"
            epsilons = [float(p.epsilon or 0.0) for p in points]
            if len(set(epsilons)) < 2:
                problems.append(f"{name}: {len(set(epsilons))} distinct DP epsilons")
                continue
            if any(later >= earlier for earlier, later in zip(epsilons, epsilons[1:])):
                problems.append(f"{name}: epsilon does not fall with the SNR: {epsilons}")
            weakest, strongest = _best(rows, points[0]), _best(rows, points[-1])
            if not weakest.value > strongest.value:
                problems.append(
                    f"{name}: {weakest.value:.1f} dB at SNR {_snr(points[0]):g} does not beat "
                    f"{strongest.value:.1f} dB at SNR {_snr(points[-1]):g}"
                )
            for p in points:
                want = expected if _snr(p) == claim else None
                if p.expected is not want:
                    problems.append(f"{name}: SNR {_snr(p):g} expects {p.expected}, not {want}")
                if p.baseline is None or p.threshold is None or p.noise_multiplier is None:
                    problems.append(f"{name}: SNR {_snr(p):g} lacks baseline/threshold/z")
            if claim not in {_snr(p) for p in points}:
                problems.append(f"{name}: no row at the claimed SNR {claim:g}")
    return problems


def label_problems(first: Sequence[Row], second: Sequence[Row]) -> list[str]:
    """Row keys (:data:`ROW_KEY`) that one run has and the other lacks."""
    keys = [{tuple(getattr(r, f) for f in ROW_KEY) for r in run} for run in (first, second)]
    return [f"only in one seed: {key}" for key in sorted(keys[0] ^ keys[1], key=str)]


def test_every_attack_has_a_dp_curve(runs: dict[int, list[Row]]) -> None:
    for rows in runs.values():
        assert curve_problems(rows) == []
        curves = _curves(rows)
        assert all(len(points) >= 2 for points in curves.values())
        # the model-level family only: every row of the sweep is one of its own
        assert {r.family for r in rows} == {Family.MODEL_LEVEL}


def test_labels_are_the_same_across_seeds(runs: dict[int, list[Row]]) -> None:
    assert label_problems(runs[0], runs[1]) == []
    for rows in runs.values():  # the noise multiplier, which varies, is in the note only
        for row in rows:
            if row.noise_multiplier is not None:
                z = f"{row.noise_multiplier:.3g}"
                assert f"z={z}" not in f"{row.attack} {row.defense} {row.setting}", row


def test_the_sweep_levels_are_ordered_and_include_the_claim() -> None:
    quick = EvaluationContext(EvaluationConfig(quick=True))
    full = EvaluationContext(EvaluationConfig(quick=False))
    for attack in CLAIMS:
        assert mc.sweep_snrs(quick, attack, 0.1) == tuple(
            sorted(set(mc.QUICK_SWEEP_SNRS[attack]) | {0.1}, reverse=True)
        )
        assert len(mc.sweep_snrs(quick, attack, 0.1)) >= 2
    assert mc.sweep_snrs(full, "Sybil", 0.3, full=mc.SYBIL_SWEEP_SNRS) == mc.SYBIL_SWEEP_SNRS
    assert mc.sweep_snrs(full, "trap/imprint weights", 0.1) == mc.SWEEP_SNRS
    assert mc.sweep_snrs(full, "Sybil", 0.2, full=(1.0, 0.1)) == (1.0, 0.2, 0.1)


def test_curve_check_catches_a_broken_curve(runs: dict[int, list[Row]]) -> None:
    rows = runs[0]
    curves = _curves(rows)
    # one DP point left: no curve
    single = [
        r
        for r in rows
        if not (r.attack == "model inconsistency" and r.epsilon is not None and _snr(r) != 0.1)
    ]
    assert any("distinct DP epsilons" in p for p in curve_problems(single))
    # epsilons in the wrong order
    mine = curves["trap/imprint weights", Protection.SECURE_AGGREGATION_DP]
    swapped = {id(mine[0]): mine[-1].epsilon, id(mine[-1]): mine[0].epsilon}
    broken = [replace(r, epsilon=swapped[id(r)]) if id(r) in swapped else r for r in rows]
    assert any("does not fall" in p for p in curve_problems(broken))
    # the attack doing better under strong noise than under weak noise
    weak = _best(rows, curves["disaggregation across rounds", Protection.SECURE_AGGREGATION_DP][0])
    worse = [replace(r, value=0.0) if r is weak else r for r in rows]
    assert any("does not beat" in p for p in curve_problems(worse))
    # a claim lost, or one made at a level that has none
    claim = next(p for p in curves["Sybil", Protection.DP] if _snr(p) == 0.3)
    extra = next(p for p in curves["Sybil", Protection.DP] if _snr(p) != 0.3)
    changed = {id(claim): None, id(extra): False}
    claims = [replace(r, expected=changed[id(r)]) if id(r) in changed else r for r in rows]
    assert sum("expects" in p for p in curve_problems(claims)) == 2


def test_label_check_catches_a_seed_dependent_label(runs: dict[int, list[Row]]) -> None:
    rows = runs[1]
    leaky = [
        replace(r, setting=f"{r.setting}; z={r.noise_multiplier:.3g}")
        if r.noise_multiplier is not None
        else r
        for r in rows
    ]
    assert label_problems(runs[0], leaky)
