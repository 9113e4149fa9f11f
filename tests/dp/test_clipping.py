"""Clipping invariants (hypothesis), per-layer clipping, torch state dicts, adaptive clipping."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import special

from dp.clipping import (
    AdaptiveClipper,
    adaptive_clip_noise_params,
    clip_indicator,
    clip_l2,
    clip_per_layer,
    flatten_update,
    l2_norm,
)
from secagg.errors import EncodingError, InvalidParameterError

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
vectors = arrays(np.float64, st.integers(1, 64), elements=finite)
clips = st.floats(1e-3, 1e3, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(vectors, clips)
def test_flat_clip_invariants(x: np.ndarray, c: float) -> None:
    result = clip_l2(x, c)
    out = result.update
    norm = float(np.linalg.norm(x))
    assert result.norm == pytest.approx(norm, rel=1e-12, abs=1e-300)
    # never above the clip norm
    assert float(np.linalg.norm(out)) <= c
    if norm <= c:
        # untouched, but a copy
        assert np.array_equal(out, x)
        assert out is not x
        assert not result.clipped
    else:
        assert result.clipped
        # direction preserved, norm essentially at the bound
        assert float(np.linalg.norm(out)) == pytest.approx(c, rel=1e-9)
        cos = float(np.dot(out, x)) / (float(np.linalg.norm(out)) * norm)
        assert cos == pytest.approx(1.0, abs=1e-9)
    # idempotent
    again = clip_l2(out, c).update
    assert np.allclose(again, out, rtol=1e-12, atol=0)


@settings(max_examples=100, deadline=None)
@given(st.lists(vectors, min_size=1, max_size=5), clips)
def test_per_layer_invariants(layers: list[np.ndarray], c: float) -> None:
    update = {f"layer{i}": v for i, v in enumerate(layers)}
    result = clip_per_layer(update, c)
    assert list(result.update) == list(update)
    for (name, leaf), bound in zip(result.update.items(), result.clip_norms):
        assert float(np.linalg.norm(leaf)) <= bound
        if float(np.linalg.norm(update[name])) <= bound:
            assert np.array_equal(leaf, update[name])
    # the whole update is within the reported sensitivity, which equals the total C
    assert l2_norm(result.update) <= result.bound * (1 + 1e-12)
    assert result.bound == pytest.approx(c, rel=1e-12)


def test_a_clipped_layer_is_within_its_bound_as_numpy_measures_it() -> None:
    # one large entry among small ones: scaling by (C / ||u||)(1 - 4 eps) alone lands one
    # unit in the last place above C once np.linalg.norm rounds (found by hypothesis)
    big = np.array([7.97094875e05] + [6.4] * 13)
    update = {"a": np.zeros(1), "b": np.zeros(1), "c": np.zeros(1), "d": big}
    result = clip_per_layer(update, 0.001)
    assert result.clip_norms[3] == 0.0005
    assert float(np.linalg.norm(result.update["d"])) <= 0.0005
    assert float(np.linalg.norm(result.update["d"])) == pytest.approx(0.0005, rel=1e-12)
    flat = clip_l2(big, 0.0005)
    assert float(np.linalg.norm(flat.update)) <= 0.0005
    assert flat.factor < 0.0005 / float(np.linalg.norm(big))


@settings(max_examples=50, deadline=None)
@given(vectors)
def test_flatten_roundtrip(x: np.ndarray) -> None:
    update = {"a": x.reshape(-1, 1), "b": x[:1].astype(np.float32)}
    vec, layout = flatten_update(update)
    assert vec.shape == (layout.size,)
    back = layout.unflatten(vec)
    assert back["a"].shape == x.reshape(-1, 1).shape and np.array_equal(back["a"], x.reshape(-1, 1))
    assert back["b"].dtype == np.float32 and np.array_equal(back["b"], update["b"])


def test_per_layer_explicit_norms_and_errors() -> None:
    update = {"w": np.full(4, 3.0), "b": np.array([0.1])}
    result = clip_per_layer(update, {"w": 1.0, "b": 5.0})
    assert float(np.linalg.norm(result.update["w"])) == pytest.approx(1.0, rel=1e-9)
    assert np.array_equal(result.update["b"], update["b"])
    assert result.bound == pytest.approx(math.sqrt(26.0))
    seq = clip_per_layer([np.ones(4), np.ones(9)], [1.0, 1.0])
    assert [float(np.linalg.norm(v)) for v in seq.update] == pytest.approx([1.0, 1.0], rel=1e-9)
    with pytest.raises(InvalidParameterError):
        clip_per_layer(update, {"w": 1.0})
    with pytest.raises(InvalidParameterError):
        clip_per_layer([np.ones(2)], [1.0, 2.0])
    with pytest.raises(EncodingError):
        clip_per_layer(np.ones(3), 1.0)


def test_torch_state_dict_delta() -> None:
    torch.manual_seed(0)  # test data only
    model = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    delta = {k: torch.randn_like(v) * 10 for k, v in model.state_dict().items()}
    result = clip_l2(delta, 0.5)
    assert set(result.update) == set(delta)
    for k, v in result.update.items():
        assert (
            isinstance(v, torch.Tensor) and v.dtype == delta[k].dtype and v.shape == delta[k].shape
        )
    assert l2_norm(result.update) <= 0.5
    total = math.sqrt(sum(float((v.double() ** 2).sum()) for v in delta.values()))
    assert result.norm == pytest.approx(total, rel=1e-6)
    per_layer = clip_per_layer(delta, 1.0)
    assert l2_norm(per_layer.update) <= 1.0
    vec, layout = flatten_update(result.update)
    rebuilt = layout.unflatten(vec)
    assert all(torch.equal(rebuilt[k], result.update[k]) for k in delta)
    # the input is not modified
    assert l2_norm(delta) == pytest.approx(total, rel=1e-6)


def test_float32_and_bfloat16_stay_below_the_bound() -> None:
    rng = np.random.default_rng(1)  # test data only
    x = rng.normal(size=1000).astype(np.float32) * 100
    assert float(np.linalg.norm(clip_l2(x, 1.0).update.astype(np.float64))) <= 1.0
    t = torch.from_numpy(x).to(torch.bfloat16)
    out = clip_l2(t, 1.0).update
    assert out.dtype == torch.bfloat16
    assert float(out.double().norm()) <= 1.0


def test_bad_inputs() -> None:
    with pytest.raises(InvalidParameterError):
        clip_l2(np.ones(3), 0.0)
    with pytest.raises(InvalidParameterError):
        clip_l2(np.ones(3), float("nan"))
    with pytest.raises(EncodingError):
        clip_l2(np.array([1.0, np.nan]), 1.0)
    with pytest.raises(EncodingError):
        clip_l2(np.array([1, 2, 3]), 1.0)
    with pytest.raises(EncodingError):
        clip_l2({"n": torch.tensor(3)}, 1.0)
    with pytest.raises(EncodingError):
        clip_l2("not an update", 1.0)


def test_adaptive_clipping_converges_to_the_target_quantile() -> None:
    rng = np.random.default_rng(2)  # synthetic norms (test data only)
    m = 100
    for gamma in (0.3, 0.8):
        clipper = AdaptiveClipper(initial_clip=0.05, target_quantile=gamma, expected_clients=m)
        fractions = []
        for _ in range(400):
            norms = rng.lognormal(mean=0.0, sigma=1.0, size=m)
            indicators = [clip_indicator(n, clipper.clip_norm) for n in norms]
            step = clipper.update(sum(indicators))
            fractions.append(float(np.mean(norms <= step.previous_clip)))
            assert isinstance(step.event, dp_accounting.GaussianDpEvent)
            assert step.event.noise_multiplier == pytest.approx(2 * 0.05 * m)
        # the unclipped fraction settles at the target, and the clip at the true quantile
        assert float(np.mean(fractions[-150:])) == pytest.approx(gamma, abs=0.04)
        true_quantile = float(np.exp(math.sqrt(2) * special.erfinv(2 * gamma - 1)))
        assert clipper.clip_norm == pytest.approx(true_quantile, rel=0.25)


def test_adaptive_linear_rule_and_validation() -> None:
    clipper = AdaptiveClipper(
        initial_clip=1.0,
        target_quantile=0.5,
        expected_clients=10,
        count_stddev=0.0,
        geometric=False,
    )
    step = clipper.update(5.0)  # every client unclipped: fraction 1.0
    assert step.noised_fraction == pytest.approx(1.0)
    assert step.clip_norm == pytest.approx(1.0 - 0.2 * 0.5)
    assert isinstance(step.event, dp_accounting.NonPrivateDpEvent)
    with pytest.raises(InvalidParameterError):
        AdaptiveClipper(initial_clip=1.0, target_quantile=1.5, expected_clients=10)
    with pytest.raises(InvalidParameterError):
        clipper.update(float("inf"))


def test_adaptive_noise_split() -> None:
    z_value, sb = adaptive_clip_noise_params(1.0, 100)
    assert sb == pytest.approx(5.0)
    # composing the two Gaussian releases gives back the total noise multiplier
    assert (z_value**-2 + (2 * sb) ** -2) ** -0.5 == pytest.approx(1.0)
    assert z_value > 1.0
    with pytest.raises(InvalidParameterError):
        adaptive_clip_noise_params(1.0, 10, count_stddev=0.4)
