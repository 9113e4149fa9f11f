"""The recipe: secure aggregation with DP around a user's FL loop, end to end through the
protocols."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
import torch

from dp.accounting import compute_epsilon, distributed_pld_epsilon
from dp.distributed import DistributedMechanism, select_parameters_for_threat_model
from dp.ledger import LocalDpSgd
from secagg import SecureAggregator
from secagg.errors import (
    BudgetExceededError,
    EncodingError,
    InvalidParameterError,
    ThresholdNotMetError,
)
from secagg.recipe import AggregationProtocol, DPMode, fixed_point_encoder
from secagg.recipe.updates import clip_rows
from threat_models.model import ServerClass, ThreatModel


def numpy_updates(n: int, seed: int = 0, scale: float = 0.1) -> dict[int, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {c: {"w": rng.normal(0, scale, (3, 4)), "b": rng.normal(0, scale, 4)} for c in range(n)}


def plain_mean(updates: dict[int, dict[str, np.ndarray]], ids: list[int]) -> dict[str, np.ndarray]:
    return {k: np.mean([updates[c][k] for c in ids], axis=0) for k in ("w", "b")}


@pytest.mark.parametrize("protocol", ["secagg", "secagg+"])
def test_mean_without_dp_equals_the_plain_mean_up_to_quantisation(protocol: str) -> None:
    n = 9
    updates = numpy_updates(n)
    aggregator = SecureAggregator(population=n, protocol=protocol, dp="none", clip_norm=None)
    mean = aggregator.mean(updates)
    expected = plain_mean(updates, list(range(n)))
    # each client's encoding is off by less than one quantum; the mean by less than one
    quantum = fixed_point_encoder(aggregator.value_bound, cohort=n, clipped=False).quantum
    for key in ("w", "b"):
        assert mean[key].shape == expected[key].shape
        assert np.max(np.abs(mean[key] - expected[key])) < quantum
    report = aggregator.last_round
    assert report is not None and report.survivors == tuple(range(n)) and report.epsilon is None


def test_structures_come_back_as_they_were_given() -> None:
    n = 5
    rng = np.random.default_rng(1)
    state_dicts = {
        f"client-{c}": {
            "layer.weight": torch.tensor(rng.normal(0, 0.1, (2, 3)), dtype=torch.float32),
            "layer.bias": torch.tensor(rng.normal(0, 0.1, 2), dtype=torch.float64),
        }
        for c in range(n)
    }
    aggregator = SecureAggregator(population=n, dp="none", client_ids=list(state_dicts))
    mean = aggregator.mean(state_dicts)
    assert list(mean) == ["layer.weight", "layer.bias"]
    assert (
        isinstance(mean["layer.weight"], torch.Tensor)
        and mean["layer.weight"].dtype == torch.float32
    )
    assert mean["layer.bias"].dtype == torch.float64 and tuple(mean["layer.weight"].shape) == (2, 3)
    expected = torch.stack([s["layer.weight"] for s in state_dicts.values()]).mean(0)
    assert torch.allclose(mean["layer.weight"], expected, atol=1e-6)
    assert aggregator.last_round is not None
    assert set(aggregator.last_round.survivors) == set(state_dicts)

    arrays = [rng.normal(0, 0.1, 6) for _ in range(n)]  # a list of single arrays, ids 0..n-1
    total = SecureAggregator(population=n, dp="none").sum(arrays)
    assert isinstance(total, np.ndarray) and np.allclose(total, np.sum(arrays, axis=0), atol=1e-6)


def test_weighted_mean_folds_the_weights_into_the_masked_vector() -> None:
    n = 6
    updates = numpy_updates(n, seed=2)
    weights = {c: float(10 * (c + 1)) for c in range(n)}
    aggregator = SecureAggregator(population=n, dp="none", clip_norm=None, max_weight=100.0)
    mean = aggregator.mean(updates, weights=weights)
    expected = np.average(
        [updates[c]["w"] for c in range(n)], axis=0, weights=[weights[c] for c in range(n)]
    )
    assert np.max(np.abs(mean["w"] - expected)) < 1e-6


def test_dropped_clients_are_left_out_and_reported() -> None:
    n = 10
    updates = numpy_updates(n, seed=3)
    aggregator = SecureAggregator(
        population=n, dp="none", threat_model=ThreatModel(dropout_fraction=0.25), verify=True
    )
    mean = aggregator.mean(updates, dropouts={"share_keys": [2], "masked_input": [7]})
    report = aggregator.last_round
    assert report is not None
    assert set(report.dropped) == {2, 7}
    survivors = [c for c in range(n) if c not in (2, 7)]
    assert list(report.survivors) == survivors
    assert np.max(np.abs(mean["w"] - plain_mean(updates, survivors)["w"])) < 1e-6
    assert report.max_abs_difference is not None and report.max_abs_difference < 1e-12


def test_central_dp_adds_the_calibrated_gaussian_noise_and_accounts_for_it() -> None:
    n, d, z, clip = 8, 20_000, 1.5, 0.5
    zeros = {c: np.zeros(d) for c in range(n)}
    aggregator = SecureAggregator(population=n, dp="central", noise_multiplier=z, clip_norm=clip)
    total = aggregator.sum(zeros)
    # the released sum of n zero updates is pure noise N(0, (z C)^2)
    assert abs(float(np.std(total)) / (z * clip) - 1.0) < 0.05
    assert abs(float(np.mean(total))) < 5 * z * clip / math.sqrt(d)
    expected = compute_epsilon(dp_accounting.GaussianDpEvent(z), aggregator.delta, accountant="pld")
    assert aggregator.epsilon == pytest.approx(expected, rel=1e-9)
    assert len(aggregator.ledger) == 1


def test_distributed_dp_noise_is_added_by_the_clients_and_accounted() -> None:
    n, d, z, clip = 10, 4096, 1.0, 1.0
    threat = ThreatModel()
    zeros = {c: np.zeros(d) for c in range(n)}
    aggregator = SecureAggregator(
        population=n,
        dp="distributed",
        noise_multiplier=z,
        clip_norm=clip,
        threat_model=threat,
        verify=True,
    )
    total = aggregator.sum(zeros)
    params = select_parameters_for_threat_model(
        threat,
        mechanism=DistributedMechanism.DISCRETE_GAUSSIAN,
        noise_multiplier=z,
        clip_norm=clip,
        bits=32,
        expected_clients=n,
        dimension=d,
    )
    # all n clients survived: their shares add up to more than the target z C (sized for
    # n - dropouts - colluders honest survivors)
    expected_std = params.aggregate_error_stddev(n)
    assert expected_std > z * clip
    assert abs(float(np.std(total)) / expected_std - 1.0) < 0.06
    report = aggregator.last_round
    assert report is not None and report.max_abs_difference is not None
    assert report.max_abs_difference < 1e-9  # the protocol summed exactly what the clients encoded
    # the ledger holds the weakest mechanism the round could have released: the noise of
    # the fewest survivors the clients would unmask (n - max_dropouts)
    from dp.distributed import DistributedDPEncoder

    planned = DistributedDPEncoder(params).dp_event(n - threat.max_dropouts(n))
    # two valid upper bounds, the ledger reports the smaller: the RDP bound of the discrete
    # Gaussian sum, and the Gaussian PLD of the same noise multiplier plus the closeness
    # correction (the tighter one here)
    rdp_eps = compute_epsilon(planned, aggregator.delta, accountant="rdp")
    pld_eps = distributed_pld_epsilon(planned, aggregator.delta)
    assert pld_eps < rdp_eps
    assert aggregator.epsilon == pytest.approx(min(rdp_eps, pld_eps), rel=1e-9)


def test_distributed_dp_takes_the_pld_accountant_and_calibrates_to_the_ledgers_bound() -> None:
    n, rounds, target = 10, 2, 6.0
    updates = numpy_updates(n, seed=8)
    runs = {}
    for accountant in ("pld", "rdp"):
        aggregator = SecureAggregator(
            population=n,
            dp="distributed",
            accountant=accountant,
            target_epsilon=target,
            rounds=rounds,
        )
        for _ in range(rounds):
            aggregator.mean(updates)
        assert aggregator.privacy().accountant == accountant
        # z is calibrated to the figure the ledger enforces, so the target is met closely
        assert aggregator.epsilon is not None and 0.97 * target <= aggregator.epsilon <= target
        with pytest.raises(BudgetExceededError):
            aggregator.mean(updates)
        runs[accountant] = aggregator
    pld, rdp = runs["pld"], runs["rdp"]
    # for distributed discrete Gaussian noise both report the smaller of the two valid bounds
    assert pld.noise_multiplier == rdp.noise_multiplier
    assert pld.epsilon == pytest.approx(rdp.epsilon, rel=1e-12)
    assert pld.privacy(accountant="rdp").epsilon_per_client == pytest.approx(pld.epsilon, rel=1e-12)
    event = dp_accounting.SelfComposedDpEvent(pld.ledger.rounds[0].mechanism, rounds)
    by_pld = distributed_pld_epsilon(event, pld.delta)
    by_rdp = compute_epsilon(event, pld.delta, accountant="rdp")
    assert pld.epsilon == pytest.approx(min(by_pld, by_rdp), rel=1e-9)
    assert by_pld < by_rdp  # the RDP bound alone would have needed more noise
    # the default is the same accountant; PRV cannot account the discrete Gaussian
    assert SecureAggregator(population=n, dp="distributed").privacy().accountant == "pld"
    with pytest.raises(InvalidParameterError, match="'pld' or 'rdp'"):
        SecureAggregator(population=n, dp="distributed", accountant="prv")


def test_distributed_dp_round_aborts_when_more_clients_drop_than_the_noise_allows() -> None:
    n = 10
    aggregator = SecureAggregator(
        population=n, dp="distributed", threat_model=ThreatModel(dropout_fraction=0.1)
    )
    assert ThreatModel(dropout_fraction=0.1).max_dropouts(n) == 1
    with pytest.raises(ThresholdNotMetError):
        aggregator.mean(numpy_updates(n), dropouts={"masked_input": [1, 2]})
    assert aggregator.history == ()


def test_budget_is_enforced_before_anything_is_spent() -> None:
    n = 6
    updates = numpy_updates(n, seed=4)
    one_round = compute_epsilon(dp_accounting.GaussianDpEvent(2.0), 1e-3, accountant="pld")
    aggregator = SecureAggregator(
        population=n, dp="central", noise_multiplier=2.0, delta=1e-3, epsilon_budget=1.5 * one_round
    )
    aggregator.mean(updates)
    spent = aggregator.epsilon
    with pytest.raises(BudgetExceededError):
        aggregator.mean(updates)
    assert len(aggregator.ledger) == 1
    assert len(aggregator.history) == 1
    assert aggregator.epsilon == spent


def test_target_epsilon_is_met_after_the_planned_rounds() -> None:
    n, rounds, target = 6, 3, 4.0
    updates = numpy_updates(n, seed=5)
    aggregator = SecureAggregator(population=n, dp="central", target_epsilon=target, rounds=rounds)
    for _ in range(rounds):
        aggregator.mean(updates)
    assert aggregator.epsilon is not None
    assert 0.97 * target <= aggregator.epsilon <= target
    with pytest.raises(BudgetExceededError):  # the target is the budget
        aggregator.mean(updates)


def test_local_dp_records_the_clients_dp_sgd_steps() -> None:
    n = 5
    updates = numpy_updates(n, seed=6)
    steps = {c: (LocalDpSgd(noise_multiplier=1.1, sample_rate=0.1, steps=20),) for c in range(n)}
    aggregator = SecureAggregator(population=n, dp="local", clip_norm=None)
    aggregator.mean(updates, local_dp=steps)
    aggregator.mean(updates, local_dp=steps)
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(1.1)), 40
    )
    expected = compute_epsilon(event, aggregator.delta, accountant="pld")  # the tightest by default
    assert aggregator.epsilon == pytest.approx(expected, rel=1e-6)


def test_paillier_with_a_decryption_committee() -> None:
    n = 5
    updates = numpy_updates(n, seed=7)
    aggregator = SecureAggregator(
        population=n,
        protocol="paillier",
        dp="none",
        threat_model=ThreatModel(server=ServerClass.SEMI_MALICIOUS),
        hazmat_paillier_key_bits=512,  # INSECURE size, to keep the test fast
        verify=True,
    )
    for _ in range(2):  # the dealt key serves every round
        mean = aggregator.mean(updates)
        assert np.max(np.abs(mean["b"] - plain_mean(updates, list(range(n)))["b"])) < 1e-6
    assert aggregator.last_round is not None and aggregator.last_round.max_abs_difference == 0.0


def test_sample_cohort_is_a_poisson_sample() -> None:
    aggregator = SecureAggregator(population=1000, clients_per_round=100, dp="none")
    cohort = aggregator.sample_cohort()
    # Binomial(1000, 0.1): mean 100, sd 9.5; six sd either side
    assert 43 <= len(cohort) <= 157
    assert len(set(cohort)) == len(cohort) and set(cohort) <= set(range(1000))
    assert SecureAggregator(population=5, dp="none").sample_cohort(list("abcde")) == list("abcde")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"protocol": "bogus"}, InvalidParameterError),
        ({"dp": "bogus"}, InvalidParameterError),
        ({"dp": "central", "clip_norm": -1.0}, InvalidParameterError),
        ({"target_epsilon": 1.0}, InvalidParameterError),  # no rounds
        ({"target_epsilon": 1.0, "rounds": 3, "noise_multiplier": 1.0}, InvalidParameterError),
        ({"dp": "distributed", "accountant": "prv"}, InvalidParameterError),
        ({"clients_per_round": 50}, InvalidParameterError),
        ({"delta": 1.5}, InvalidParameterError),
        ({"population": 1}, InvalidParameterError),
    ],
)
def test_invalid_configurations_are_refused(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    config: dict[str, object] = {"population": 10}
    config.update(kwargs)
    with pytest.raises(error):
        SecureAggregator(**config)  # type: ignore[arg-type]


def test_invalid_updates_are_refused_and_change_nothing() -> None:
    aggregator = SecureAggregator(population=4, dp="none", clip_norm=None)
    good = numpy_updates(4)
    with pytest.raises(InvalidParameterError):
        aggregator.mean({**good, 3: {"w": np.zeros((3, 4))}})  # another structure
    with pytest.raises(EncodingError):
        aggregator.mean({**good, 3: {"w": np.full((3, 4), np.nan), "b": np.zeros(4)}})
    with pytest.raises(EncodingError):
        aggregator.mean(
            {**good, 3: {"w": np.full((3, 4), 1e6), "b": np.zeros(4)}}
        )  # beyond value_bound
    with pytest.raises(InvalidParameterError):
        aggregator.mean({0: good[0]})
    with pytest.raises(InvalidParameterError):
        aggregator.mean(good, dropouts={"masked_input": [99]})
    with pytest.raises(InvalidParameterError):
        aggregator.mean({True: good[0], 2: good[1], 3: good[2]})
    with pytest.raises(InvalidParameterError):
        aggregator.mean(good, weights=[1.0, 2.0])
    with pytest.raises(InvalidParameterError):
        SecureAggregator(population=4, dp="central").mean(good, weights=[1.0] * 4)
    assert aggregator.history == ()


def test_enums_and_strings_are_interchangeable() -> None:
    a = SecureAggregator(population=4, protocol=AggregationProtocol.SECAGG, dp=DPMode.NONE)
    b = SecureAggregator(population=4, protocol="secagg", dp="none")
    assert (a.protocol, a.dp) == (b.protocol, b.dp) == (AggregationProtocol.SECAGG, DPMode.NONE)


def test_dict_updates_may_list_their_keys_in_any_order() -> None:
    n = 5
    updates = numpy_updates(n)
    shuffled = {c: dict(reversed(list(u.items()))) if c % 2 else u for c, u in updates.items()}
    assert list(shuffled[1]) == ["b", "w"]
    aggregator = SecureAggregator(population=n, dp="none", clip_norm=None)
    mean = aggregator.mean(shuffled)
    assert list(mean) == ["w", "b"]  # the first update's order
    expected = plain_mean(updates, list(range(n)))
    for key in ("w", "b"):
        assert mean[key].shape == expected[key].shape
        assert np.allclose(mean[key], expected[key], atol=1e-6)


@pytest.mark.parametrize(
    ("other", "names"),
    [
        ({"w": np.zeros((3, 4))}, ["missing keys ['b']"]),
        ({"w": np.zeros((3, 4)), "b": np.zeros(4), "c": np.zeros(1)}, ["extra keys ['c']"]),
        ({"w": np.zeros((3, 4)), "x": np.zeros(4)}, ["missing keys ['b']", "extra keys ['x']"]),
        ({"w": np.zeros((4, 3)), "b": np.zeros(4)}, ["'w'", "(4, 3)", "(3, 4)"]),
    ],
    ids=["missing", "extra", "renamed", "shape"],
)
def test_a_different_structure_is_refused_naming_the_difference(
    other: dict[str, np.ndarray], names: list[str]
) -> None:
    aggregator = SecureAggregator(population=4, dp="none", clip_norm=None)
    with pytest.raises(InvalidParameterError, match="client 3 has a different structure") as exc:
        aggregator.mean({**numpy_updates(4), 3: other})
    for name in names:
        assert name in str(exc.value)
    assert aggregator.last_round is None


def test_list_updates_of_different_shapes_name_the_leaf() -> None:
    updates = [[np.zeros(2), np.zeros(3)] for _ in range(3)] + [[np.zeros(2), np.zeros(4)]]
    with pytest.raises(InvalidParameterError, match=r"leaf '1' has shape \(4,\) instead of \(3,\)"):
        SecureAggregator(population=4, dp="none", clip_norm=None).mean(updates)


def test_a_list_of_floats_comes_back_as_floats() -> None:
    n = 5
    updates = [[0.1 * c, -0.05 * c, 0.02] for c in range(n)]
    mean = SecureAggregator(population=n, dp="none", clip_norm=None).mean(updates)
    assert isinstance(mean, list) and len(mean) == 3
    assert all(type(x) is float for x in mean)
    assert np.allclose(mean, np.mean(updates, axis=0), atol=1e-6)


def test_clip_rows_leaves_every_row_within_the_clip_norm() -> None:
    # a row of one large entry among small ones: scaling by C / ||u|| alone leaves its norm
    # one unit in the last place above C
    big = np.array([7.97094875e05] + [6.4] * 13)
    matrix = np.stack([big, big / 1e10, -big])
    shrunk = clip_rows(matrix, 0.0005, value_bound=1.0)
    assert shrunk == 2
    norms = np.linalg.norm(matrix, axis=1)
    assert np.all(norms <= 0.0005)
    assert norms[0] == pytest.approx(0.0005, rel=1e-12)
    assert np.array_equal(matrix[1], big / 1e10)  # within the norm: untouched
