"""Model-level attacks through secure aggregation: each isolates individual data from sums."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from protocols import Hardening
from secagg.errors import AuthenticationError, InvalidParameterError
from threat_models.attacks import gradient_inversion as gi
from threat_models.attacks import model_level as ml
from threat_models.attacks.metrics import match_reconstructions, psnr
from threat_models.attacks.protocol_level import model_hash, secure_sum
from threat_models.data import (
    Activation,
    DatasetName,
    ImageData,
    load_dataset,
    make_mlp,
    split_indices,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return load_dataset(DatasetName.DIGITS)


def _batches(
    data: ImageData, n: int, batch: int, seed: int
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    parts = split_indices(len(data), n, batch, rng=np.random.default_rng(seed))
    return {i + 1: (data.images[p], data.labels[p]) for i, p in enumerate(parts)}


def _bytes(model: torch.nn.Module) -> bytes:
    return b"".join(p.detach().numpy().tobytes() for p in model.parameters())


def test_dead_first_layer_has_zero_first_layer_gradient(digits: ImageData) -> None:
    model = make_mlp(digits.input_size, 16, 10, activation=Activation.RELU, seed=0)
    dead = ml.dead_first_layer_model(model)
    weight, bias = gi.first_linear(
        dead, gi.model_gradient(dead, digits.images[:5], digits.labels[:5])
    )
    assert float(weight.abs().max()) == 0.0 and float(bias.abs().max()) == 0.0
    assert float(next(model.parameters()).detach().abs().sum()) > 0  # the original is untouched
    with pytest.raises(InvalidParameterError):
        ml.dead_first_layer_model(make_mlp(64, 8, 10, activation=Activation.SIGMOID))


def test_model_inconsistency_through_the_real_protocol(digits: ImageData) -> None:
    model = make_mlp(digits.input_size, 32, 10, activation=Activation.RELU, seed=0)
    batches = _batches(digits, 6, 1, seed=1)
    target = 2
    # ideal sum and real protocol without model binding: the target comes out exactly
    result = ml.model_inconsistency_attack(
        model, target, batches, ml.plain_secure_sum, image_shape=digits.image_shape
    )
    assert psnr(result.reconstruction, batches[target][0]) > 60.0
    dead = ml.dead_first_layer_model(model)
    updates = ml.client_updates({c: (model if c == target else dead) for c in batches}, batches)
    hashes = {c: model_hash(_bytes(model if c == target else dead)) for c in batches}
    unbound = replace(Hardening(), model_bound_signatures=False)
    total = secure_sum(updates, protocol="secagg", hardening=unbound, model_hash=hashes)
    weight, bias = gi.first_linear(
        model, gi.unflatten_like(torch.from_numpy(total), list(model.parameters()))
    )
    assert (
        psnr(gi.closed_form_first_layer(weight, bias, digits.image_shape), batches[target][0])
        > 60.0
    )
    # hardened: keys are signed over the model hash, peers on another model refuse them
    with pytest.raises(AuthenticationError):
        secure_sum(updates, protocol="secagg", hardening=Hardening(), model_hash=hashes)


def test_sybils_isolate_the_target_through_the_real_protocol() -> None:
    rng = np.random.default_rng(0)
    target = rng.normal(0, 0.1, 50)
    sybils = {c: np.zeros(50) for c in range(2, 7)}
    recovered = ml.sybil_attack(target, sybils, lambda ups: secure_sum(ups), target=1)
    assert np.max(np.abs(recovered - target)) < 1e-6
    with pytest.raises(InvalidParameterError):
        ml.sybil_attack(target, {1: np.zeros(50)}, ml.plain_secure_sum, target=1)


def test_trap_weights_pull_most_images_out_of_the_aggregate(digits: ImageData) -> None:
    honest = make_mlp(digits.input_size, 256, 10, activation=Activation.RELU, seed=0)
    trap = ml.imprint_model(honest, digits.images[:500], seed=0)
    assert [p.shape for p in trap.parameters()] == [p.shape for p in honest.parameters()]
    batches = _batches(digits, 8, 4, seed=2)
    aggregate = secure_sum(ml.client_updates({c: trap for c in batches}, batches))
    candidates, _ = ml.imprint_reconstruct(
        trap, torch.from_numpy(aggregate), digits.image_shape, max_candidates=32
    )
    originals = torch.cat([batches[c][0] for c in sorted(batches)])
    assert match_reconstructions(candidates, originals).count_above(30.0) >= 16


def test_disaggregation_recovers_every_client_from_round_sums(digits: ImageData) -> None:
    model = make_mlp(digits.input_size, 32, 10, activation=Activation.RELU, seed=0)
    batches = _batches(digits, 6, 1, seed=3)
    ids = sorted(batches)
    updates = ml.client_updates({c: model for c in batches}, batches)
    participation = ml.participation_matrix(12, 6, 4, rng=np.random.default_rng(4))
    assert np.all(participation.sum(axis=1) == 4) and np.linalg.matrix_rank(participation) == 6
    sums = np.stack(
        [
            ml.plain_secure_sum({c: updates[c] for j, c in enumerate(ids) if participation[r, j]})
            for r in range(12)
        ]
    )
    estimate = ml.disaggregate(sums, participation)
    for j, c in enumerate(ids):
        weight, bias = gi.first_linear(
            model, gi.unflatten_like(torch.from_numpy(estimate[j]), list(model.parameters()))
        )
        assert (
            psnr(gi.closed_form_first_layer(weight, bias, digits.image_shape), batches[c][0]) > 60.0
        )
    with pytest.raises(InvalidParameterError):
        ml.participation_matrix(3, 6, 4, rng=np.random.default_rng(0))


def test_ring_sum_wraps_modulo_two_to_the_bits() -> None:
    top = np.array([(1 << 32) - 1, 5], dtype=np.uint64)
    one = np.array([1, 7], dtype=np.uint64)
    assert ml.ring_sum({1: top, 2: one}, 32).tolist() == [0, 12]
    with pytest.raises(InvalidParameterError):
        ml.ring_sum({}, 32)
