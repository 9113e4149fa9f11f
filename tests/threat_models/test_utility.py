"""Accuracy of the model trained under a defence: measured, cached, given to the right rows."""

from __future__ import annotations

import pytest

from secagg.errors import InvalidParameterError
from threat_models.evaluation.context import EvaluationConfig, EvaluationContext
from threat_models.evaluation.rows import Family, PrivacyLevel, Protection, Row
from threat_models.evaluation.utility import (
    CACHE_TAG,
    accuracy_key,
    defence_accuracy,
    with_accuracy,
)


@pytest.fixture(scope="module")
def ctx() -> EvaluationContext:
    return EvaluationContext(EvaluationConfig(quick=True, seed=0))


def _row(family: Family, protection: Protection, **fields: object) -> Row:
    base: dict[str, object] = {
        "family": family,
        "attack": "a",
        "defense": "d",
        "setting": "s",
        "metric": "best_psnr_db",
        "value": 10.0,
        "baseline": 11.0,
        "baseline_name": "dataset mean",
        "succeeded": False,
        "expected": None,
        "protection": protection,
    }
    base.update(fields)
    return Row(**base)  # type: ignore[arg-type]


def _dp(family: Family, z: float, level: PrivacyLevel = PrivacyLevel.USER) -> Row:
    return _row(
        family,
        Protection.SECURE_AGGREGATION_DP,
        epsilon=5.0,
        delta=1e-5,
        epsilon_level=level,
        noise_multiplier=z,
    )


def test_accuracy_falls_with_the_noise(ctx: EvaluationContext) -> None:
    clean = defence_accuracy(ctx, None, 8)
    mild = defence_accuracy(ctx, 0.3, 8)
    heavy = defence_accuracy(ctx, 10.0, 8)
    assert clean > 0.9  # the noiseless model is good on the digits
    assert mild > 0.85
    assert heavy < clean - 0.3  # heavy user-level noise with 8 clients ruins the model
    assert heavy < 0.5


def test_a_second_call_reads_the_cache(ctx: EvaluationContext) -> None:
    first = defence_accuracy(ctx, 1.0, 8)
    key = accuracy_key(ctx, 1.0, 8)
    assert key[0] == CACHE_TAG and ctx.cache[key] == first
    ctx.cache[key] = -1.0  # a retraining would not return this
    assert defence_accuracy(ctx, 1.0, 8) == -1.0
    ctx.cache[key] = first
    # the positive control: a key not in the cache trains and stores a real accuracy
    fresh = accuracy_key(ctx, 1.0, 4)
    assert fresh not in ctx.cache
    assert 0.0 <= defence_accuracy(ctx, 1.0, 4) <= 1.0 and fresh in ctx.cache


def test_no_noise_and_zero_noise_share_a_key_and_bad_arguments_are_refused(
    ctx: EvaluationContext,
) -> None:
    assert accuracy_key(ctx, None, 8) == accuracy_key(ctx, 0.0, 8)
    with pytest.raises(InvalidParameterError):
        defence_accuracy(ctx, -1.0, 8)
    with pytest.raises(InvalidParameterError):
        defence_accuracy(ctx, 1.0, 0)


def test_with_accuracy_fills_the_trained_families_and_leaves_the_others(
    ctx: EvaluationContext,
) -> None:
    rows = (
        _row(Family.PROTOCOL_LEVEL, Protection.SECURE_AGGREGATION, metric="recovered"),
        _row(Family.GRADIENT_INVERSION, Protection.NONE),
        _row(Family.MODEL_LEVEL, Protection.UNHARDENED),
        _dp(Family.MODEL_LEVEL, 10.0),
        _dp(Family.MEMBERSHIP, 1.0, PrivacyLevel.SAMPLE),
        _dp(Family.GRADIENT_INVERSION, 1.0, PrivacyLevel.SAMPLE),
        _row(Family.GRADIENT_INVERSION, Protection.DP),  # DP without a stated multiplier
        _row(Family.MEMBERSHIP, Protection.NONE, accuracy=0.77),
    )
    out = with_accuracy(rows, ctx)
    clean = defence_accuracy(ctx, None, 8)
    assert out[0].accuracy is None  # protocol-level: no model is trained
    assert out[1].accuracy == clean and out[2].accuracy == clean
    assert out[3].accuracy == defence_accuracy(ctx, 10.0, 8)
    assert out[3].accuracy is not None and out[3].accuracy < clean
    assert out[4].accuracy is None and out[5].accuracy is None  # sample level: DP-SGD
    assert out[6].accuracy is None
    assert out[7].accuracy == 0.77  # a cell's own accuracy stays
    assert out[0] is rows[0]  # untouched rows are the same objects


def test_with_accuracy_keeps_an_accuracy_the_cell_set(ctx: EvaluationContext) -> None:
    row = _row(Family.GRADIENT_INVERSION, Protection.NONE, accuracy=0.5)
    assert with_accuracy((row,), ctx)[0].accuracy == 0.5
