"""Distributed DP: rotation, parameter selection, the encoder, events, and the protocols."""

from __future__ import annotations

import math
from dataclasses import dataclass

import dp_accounting
import numpy as np
import pytest
from scipy import linalg, stats

import protocols
from dp.distributed import (
    DistributedDPEncoder,
    DistributedDPParameters,
    DistributedMechanism,
    RandomizedHadamard,
    modclip_stddevs,
    rounded_l1_sensitivity,
    rounded_l2_sensitivity,
    select_parameters,
    select_parameters_for_threat_model,
)
from dp.events import DistributedDiscreteGaussianDpEvent, DistributedSkellamDpEvent
from secagg.errors import (
    CapacityError,
    EncodingError,
    InfeasibleThreatModelError,
    InvalidParameterError,
)
from secagg.primitives.encoding import VectorEncoder, from_ring_centered, ring_mask
from threat_models import ThreatModel

MECHANISMS = [DistributedMechanism.DISCRETE_GAUSSIAN, DistributedMechanism.SKELLAM]


def _params(
    mechanism: DistributedMechanism = DistributedMechanism.DISCRETE_GAUSSIAN, **overrides: object
) -> DistributedDPParameters:
    config: dict[str, object] = {
        "mechanism": mechanism,
        "noise_multiplier": 1.0,
        "clip_norm": 1.0,
        "bits": 24,
        "expected_clients": 10,
        "dimension": 3000,
    }
    config.update(overrides)
    return select_parameters(**config)  # type: ignore[arg-type]


def _vectors(n: int, d: int, norm: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)  # simulation data
    out = []
    for _ in range(n):
        v = rng.normal(size=d)
        out.append(v * (norm * rng.uniform(0.2, 1.0) / np.linalg.norm(v)))
    return out


def _modular_sum(encodings: list[np.ndarray], bits: int) -> np.ndarray:
    acc = np.zeros_like(encodings[0])
    for e in encodings:
        acc = (acc + e) & ring_mask(bits)
    return acc


# --- rotation -------------------------------------------------------------------------


def test_hadamard_matches_the_explicit_matrix() -> None:
    rot = RandomizedHadamard(bytes(range(32)), 13)
    assert rot.padded_dimension == 16
    columns = []
    for i in range(16):
        e = np.zeros(16)
        e[i] = 1.0
        # rotate() pads a length-13 vector; build the full matrix on the padded space
        columns.append(RandomizedHadamard._fwht(e * rot._signs) / 4.0)
    m = np.stack(columns, axis=1)
    signs = m[0] * 4.0  # the Hadamard matrix's first row is all ones
    assert set(np.unique(signs)) <= {-1.0, 1.0}
    assert np.allclose(m * 4.0 / signs, linalg.hadamard(16))
    assert np.allclose(m.T @ m, np.eye(16))
    x = np.random.default_rng(0).normal(size=13)
    assert np.allclose(rot.rotate(x), m[:, :13] @ x)


def test_rotation_is_orthogonal_and_invertible() -> None:
    rot = RandomizedHadamard(b"\x07" * 32, 1000)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=1000), rng.normal(size=1000)
    rx, ry = rot.rotate(x), rot.rotate(y)
    assert rx.shape == (1024,)
    assert float(np.dot(rx, ry)) == pytest.approx(float(np.dot(x, y)), rel=1e-10, abs=1e-10)
    assert np.allclose(rot.unrotate(rx), x, atol=1e-12)
    # flattening: a spike becomes +-1/sqrt(D) everywhere
    spike = np.zeros(1000)
    spike[17] = 5.0
    assert np.allclose(np.abs(rot.rotate(spike)), 5.0 / 32.0)


def test_rotation_signs_come_from_the_seed() -> None:
    a = RandomizedHadamard(b"\x01" * 32, 64)
    b = RandomizedHadamard(b"\x01" * 32, 64)
    c = RandomizedHadamard(b"\x02" * 32, 64)
    x = np.arange(64.0)
    assert np.array_equal(a.rotate(x), b.rotate(x))
    assert not np.allclose(a.rotate(x), c.rotate(x))
    with pytest.raises(InvalidParameterError):
        RandomizedHadamard(b"short", 8)
    with pytest.raises(EncodingError):
        a.rotate(np.zeros(63))


# --- parameter selection ----------------------------------------------------------------


def test_scale_follows_the_subgaussian_heuristic() -> None:
    p = _params(
        bits=20,
        expected_clients=50,
        dimension=5000,
        modclip_prob=1e-4,
        noise_multiplier=0.8,
        clip_norm=0.3,
    )
    k = stats.norm.isf(1e-4 / 2)  # two-sided
    assert modclip_stddevs(1e-4) == pytest.approx(k, rel=1e-9)
    sigma = 0.8 * 0.3 / math.sqrt(50)
    expected = math.sqrt(2.0**40 - 50 * k * k) / (
        2 * k * math.sqrt(0.3**2 * 50**2 / 8192 + 50 * sigma**2)
    )
    assert p.padded_dimension == 8192
    assert p.scale == pytest.approx(expected, rel=1e-12)
    assert p.local_stddev == pytest.approx(sigma)
    # by construction, the wrap-around probability at n summands is the target
    assert p.modular_clip_probability() == pytest.approx(1e-4, rel=1e-6)
    assert p.modular_clip_probability(10) < 1e-4


def test_sensitivities_match_the_rounding_bounds() -> None:
    p = _params(bits=14, dimension=4096, beta=math.exp(-0.5))
    c_tilde = p.clip_norm * p.scale
    bound1 = c_tilde + math.sqrt(4096)
    bound2 = math.sqrt(c_tilde**2 + 4096 / 4 + math.sqrt(2 * 0.5) * (c_tilde + math.sqrt(4096) / 2))
    assert p.l2_sensitivity == pytest.approx(min(bound1, bound2))
    assert p.l1_sensitivity == pytest.approx(p.l2_sensitivity * min(64.0, p.l2_sensitivity))
    unconditional = _params(bits=14, dimension=4096, beta=0.0)
    assert unconditional.l2_sensitivity == pytest.approx(unconditional.scale + 64.0)
    assert rounded_l2_sensitivity(10.0, 100, 0.0) == pytest.approx(20.0)
    assert rounded_l1_sensitivity(2.0, 100) == pytest.approx(4.0)
    # more bits: finer grid, less inflation
    assert _params(bits=20).sensitivity_inflation < _params(bits=12).sensitivity_inflation


def test_dropout_margin_and_colluders_size_the_noise() -> None:
    base = _params(expected_clients=20)
    margin = _params(expected_clients=20, dropout_margin=0.25)
    both = _params(expected_clients=20, dropout_margin=0.25, colluding_fraction=0.1)
    assert base.noise_clients == 20 and margin.noise_clients == 15 and both.noise_clients == 13
    assert both.colluding_clients == 2
    assert margin.local_stddev == pytest.approx(base.local_stddev * math.sqrt(20 / 15))
    assert both.local_stddev == pytest.approx(base.local_stddev * math.sqrt(20 / 13))
    # the honest survivors' noise reaches the target exactly
    assert math.sqrt(both.noise_clients) * both.local_stddev == pytest.approx(1.0)
    with pytest.raises(InfeasibleThreatModelError):
        _params(expected_clients=10, dropout_margin=0.5, colluding_fraction=0.5)


@dataclass(frozen=True)
class _Threat:
    colluding: float
    dropping: float

    def max_colluders(self, n: int) -> int:
        return math.floor(self.colluding * n)

    def max_dropouts(self, n: int) -> int:
        return math.floor(self.dropping * n)


def test_threat_model_drives_the_margin() -> None:
    p = select_parameters_for_threat_model(
        _Threat(0.1, 0.3),
        mechanism="distributed_skellam",
        noise_multiplier=1.0,
        clip_norm=1.0,
        bits=24,
        expected_clients=30,
        dimension=100,
    )
    assert p.mechanism is DistributedMechanism.SKELLAM
    assert p.colluding_clients == 3 and p.noise_clients == 30 - 3 - 9


@pytest.mark.parametrize(
    "overrides",
    [
        {"mechanism": "laplace"},
        {"noise_multiplier": -1.0},
        {"clip_norm": 0.0},
        {"bits": 63},
        {"bits": 8.0},
        {"expected_clients": 0},
        {"dimension": 0},
        {"modclip_prob": 0.0},
        {"beta": 1.0},
        {"dropout_margin": 1.0},
        {"colluding_fraction": -0.1},
    ],
)
def test_bad_parameters(overrides: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterError):
        _params(**overrides)  # type: ignore[arg-type]


def test_too_few_bits() -> None:
    with pytest.raises(CapacityError):
        _params(bits=2, expected_clients=100)
    with pytest.raises(InvalidParameterError):  # scaled noise below 1/2
        _params(bits=6, expected_clients=10, dimension=100_000, noise_multiplier=0.001)


# --- the encoder ------------------------------------------------------------------------


def test_encoder_is_a_vector_encoder() -> None:
    enc: VectorEncoder = DistributedDPEncoder(_params())
    assert enc.bits == 24 and enc.max_clients == 10
    assert enc.encoded_length(3000) == 4096
    with pytest.raises(EncodingError):
        enc.encoded_length(2999)


def test_noiseless_roundtrip_is_within_rounding_error() -> None:
    p = _params(noise_multiplier=0.0, bits=20, expected_clients=8, dimension=1500)
    enc = DistributedDPEncoder(p)
    xs = _vectors(8, 1500, 1.0, seed=2)
    encodings = [enc.encode(x) for x in xs]
    assert all(
        e.dtype == np.uint64 and e.shape == (2048,) and int(e.max()) < 2**20 for e in encodings
    )
    decoded = enc.decode_sum(_modular_sum(encodings, 20), 8)
    assert decoded.shape == (1500,)
    # each client's rounding error has L2 norm < sqrt(D) in scaled units
    assert float(np.linalg.norm(decoded - sum(xs))) < 8 * math.sqrt(2048) / p.scale
    assert isinstance(enc.last_event, dp_accounting.NonPrivateDpEvent)


def test_encoder_clips_to_the_clip_norm() -> None:
    p = _params(noise_multiplier=0.0, bits=30, expected_clients=1, dimension=200, clip_norm=0.5)
    enc = DistributedDPEncoder(p)
    x = np.random.default_rng(3).normal(size=200) * 100
    decoded = enc.decode_sum(enc.encode(x), 1)
    assert np.allclose(decoded, x * 0.5 / np.linalg.norm(x), atol=2 * math.sqrt(256) / p.scale)


def test_conditional_rounding_respects_the_sensitivity() -> None:
    # few bits: the conditional bound is the binding one
    p = _params(
        noise_multiplier=0.0, bits=10, expected_clients=2, dimension=1024, beta=math.exp(-0.5)
    )
    assert p.l2_sensitivity < p.scaled_clip + math.sqrt(1024)
    enc = DistributedDPEncoder(p, rounding_rng=np.random.default_rng(4))
    for x in _vectors(40, 1024, 1.0, seed=5):
        x *= 1.0 / np.linalg.norm(x)  # at the clip norm: the worst case
        rounded = from_ring_centered(enc.encode(x), 10)
        assert float(np.linalg.norm(rounded.astype(np.float64))) <= p.l2_sensitivity


def test_conditional_rounding_rejects_what_plain_rounding_would_release() -> None:
    """Half-integer coordinates at the clip norm: plain rounding overshoots Delta2 often."""
    p = _params(noise_multiplier=0.0, bits=10, expected_clients=2, dimension=1024)
    c_tilde, dim = p.scaled_clip, 1024
    m = math.floor(c_tilde / 32 - 0.5)
    high = math.floor(
        (c_tilde**2 * (1 - 1e-6) - dim * (m + 0.5) ** 2) / ((m + 1.5) ** 2 - (m + 0.5) ** 2)
    )
    rng = np.random.default_rng(8)
    magnitudes = np.where(np.arange(dim) < high, m + 1.5, m + 0.5)
    z = rng.choice([-1.0, 1.0], dim) * magnitudes
    assert float(np.linalg.norm(z)) <= c_tilde
    plain = [np.floor(z) + (rng.random(dim) < z - np.floor(z)) for _ in range(200)]
    overshoots = sum(float(np.linalg.norm(r)) > p.l2_sensitivity for r in plain)
    assert overshoots >= 10
    enc = DistributedDPEncoder(p)
    for _ in range(200):
        assert float(np.linalg.norm(enc._round(z, rng).astype(np.float64))) <= p.l2_sensitivity


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_noise_present_matches_the_target_with_and_without_dropouts(
    mechanism: DistributedMechanism,
) -> None:
    n, d = 10, 16_000
    p = _params(
        mechanism,
        noise_multiplier=0.7,
        clip_norm=2.0,
        expected_clients=n,
        dimension=d,
        dropout_margin=0.3,
    )
    assert p.noise_clients == 7
    enc = DistributedDPEncoder(p)
    xs = _vectors(n, d, 2.0, seed=6)
    encodings = [enc.encode(x) for x in xs]
    # all ten survive: more noise than the target
    err_all = enc.decode_sum(_modular_sum(encodings, p.bits), n) - sum(xs)
    assert float(err_all.std()) == pytest.approx(1.4 * math.sqrt(10 / 7), rel=0.04)
    assert float(err_all.std()) == pytest.approx(p.aggregate_error_stddev(n), rel=0.04)
    # three drop (the margin): exactly the target z c = 1.4 remains
    err_drop = enc.decode_sum(_modular_sum(encodings[:7], p.bits), 7) - sum(xs[:7])
    assert float(err_drop.std()) == pytest.approx(1.4, rel=0.04)
    assert abs(float(err_drop.mean())) < 5 * 1.4 / math.sqrt(d)
    event = enc.last_event
    expected_type = (
        DistributedDiscreteGaussianDpEvent
        if mechanism is DistributedMechanism.DISCRETE_GAUSSIAN
        else DistributedSkellamDpEvent
    )
    assert isinstance(event, expected_type)
    assert event.num_clients == 7
    assert event.dimension == p.padded_dimension
    assert event.l2_sensitivity == p.l2_sensitivity and event.l1_sensitivity == p.l1_sensitivity


def test_events_count_only_honest_contributors() -> None:
    p = _params(expected_clients=20, colluding_fraction=0.1)
    enc = DistributedDPEncoder(p)
    event = enc.dp_event(15)
    assert isinstance(event, DistributedDiscreteGaussianDpEvent)
    assert event.num_clients == 13
    assert event.local_sigma == pytest.approx(p.local_scaled_stddev)
    assert isinstance(enc.dp_event(2), dp_accounting.NonPrivateDpEvent)
    sk = DistributedDPEncoder(_params(DistributedMechanism.SKELLAM)).dp_event(10)
    assert isinstance(sk, DistributedSkellamDpEvent)
    assert sk.central_variance == pytest.approx(10 * sk.local_mu * 2)


def test_decode_and_encode_validation() -> None:
    enc = DistributedDPEncoder(_params())
    with pytest.raises(EncodingError):
        enc.encode(np.zeros(10))
    with pytest.raises(EncodingError):
        enc.encode(np.full(3000, np.nan))
    with pytest.raises(EncodingError):
        enc.decode_sum(np.zeros(3000, dtype=np.uint64), 2)
    with pytest.raises(EncodingError):
        enc.decode_sum(np.zeros(4096), 2)
    with pytest.raises(CapacityError):
        enc.decode_sum(np.zeros(4096, dtype=np.uint64), 11)
    with pytest.raises(InvalidParameterError):
        enc.decode_sum(np.zeros(4096, dtype=np.uint64), -1)
    with pytest.raises(InvalidParameterError):
        DistributedDPEncoder("params")  # type: ignore[arg-type]


def test_new_round_gets_a_new_rotation() -> None:
    enc = DistributedDPEncoder(_params())
    nxt = enc.for_new_round()
    assert nxt.rotation_seed != enc.rotation_seed
    assert nxt.parameters == enc.parameters
    fixed = enc.for_new_round(b"\x05" * 32)
    assert fixed.rotation_seed == b"\x05" * 32


# --- through the masking protocols --------------------------------------------------------


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("drop", [False, True])
def test_end_to_end_through_secure_aggregation(mechanism: DistributedMechanism, drop: bool) -> None:
    n, d = 8, 12_000
    p = _params(
        mechanism,
        noise_multiplier=0.5,
        clip_norm=1.0,
        expected_clients=n,
        dimension=d,
        dropout_margin=0.25,
    )
    enc = DistributedDPEncoder(p)
    xs = dict(enumerate(_vectors(n, d, 1.0, seed=7), start=1))
    dropouts = {"masked_input": [3, 5]} if drop else None
    threat = ThreatModel(colluding_fraction=0.0, dropout_fraction=0.25)
    result = protocols.simulate(
        xs, protocol="secagg+", dropouts=dropouts, encoder=enc, threat_model=threat
    )
    survivors = sorted(result.survivors)
    assert survivors == ([i for i in xs if i not in (3, 5)] if drop else list(xs))
    err = np.asarray(result.aggregate) - sum(xs[i] for i in survivors)
    assert float(err.std()) == pytest.approx(p.aggregate_error_stddev(len(survivors)), rel=0.04)
    if drop:
        # the margin covers two dropouts: the target z c remains
        assert float(err.std()) == pytest.approx(0.5, rel=0.04)
    event = enc.last_event
    assert event is not None and getattr(event, "num_clients", None) == len(survivors)


def test_end_to_end_through_threshold_paillier() -> None:
    """The same encoder under the Paillier protocol (small test key, explicitly allowed)."""
    n, d = 4, 4000
    p = _params(
        DistributedMechanism.SKELLAM, noise_multiplier=0.5, expected_clients=n, dimension=d, bits=20
    )
    enc = DistributedDPEncoder(p)
    xs = dict(enumerate(_vectors(n, d, 1.0, seed=9), start=1))
    result = protocols.simulate(
        xs,
        protocol="paillier",
        encoder=enc,
        threat_model=ThreatModel(colluding_fraction=0.0, dropout_fraction=0.0),
        key_bits=1024,
        hazmat_allow_weak_key=True,
    )
    err = np.asarray(result.aggregate) - sum(xs.values())
    assert float(err.std()) == pytest.approx(0.5, rel=0.06)
    assert isinstance(enc.last_event, DistributedSkellamDpEvent) and enc.last_event.num_clients == n


# ---------------------------------------------------------------------------------------
# Accounting the distributed discrete Gaussian through the Gaussian PLD
# ---------------------------------------------------------------------------------------

# The demo's defaults: population 100, 50 per round (Poisson), z = 2, clip 0.5, 30 rounds,
# delta = 1 / (10 * 100), 10% tolerated dropouts, 32-bit ring, 650 parameters (padded 1024).
DEMO_DDG = DistributedDiscreteGaussianDpEvent(
    l2_sensitivity=163572176.09574136,
    l1_sensitivity=5234309635.063724,
    local_sigma=50479469.3100206,
    num_clients=42,
    dimension=1024,
)


def _demo_run(mechanism: dp_accounting.DpEvent) -> dp_accounting.DpEvent:
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.5, mechanism), 30
    )


def test_demo_figure_is_within_a_hair_of_the_gaussian_pld() -> None:
    from dp.accounting import compute_epsilon, distributed_pld_epsilon

    z = math.sqrt(DEMO_DDG.num_clients) * DEMO_DDG.local_sigma / DEMO_DDG.l2_sensitivity
    assert z == pytest.approx(2.0, rel=1e-8)
    gaussian_pld = compute_epsilon(_demo_run(dp_accounting.GaussianDpEvent(z)), 1e-3)
    old_rdp = compute_epsilon(_demo_run(DEMO_DDG), 1e-3, accountant="rdp")
    new = distributed_pld_epsilon(_demo_run(DEMO_DDG), 1e-3)
    assert gaussian_pld == pytest.approx(5.098, abs=2e-3)
    assert old_rdp == pytest.approx(7.579, abs=2e-3)
    assert gaussian_pld <= new <= 1.05 * gaussian_pld
    assert new == pytest.approx(5.0993, abs=2e-3)
    assert new < old_rdp


def test_ledger_routes_distributed_gaussian_to_the_tighter_bound() -> None:
    from dp.accounting import compute_epsilon, distributed_pld_epsilon
    from dp.ledger import ClientSampling, PrivacyLedger, RoundRecord

    for kind in ("rdp", "pld"):
        ledger = PrivacyLedger(accountant=kind)
        for _ in range(30):
            ledger.spend(
                RoundRecord(DEMO_DDG, ClientSampling.from_counts(50, 100), participants=("a",))
            )
        expected = distributed_pld_epsilon(_demo_run(DEMO_DDG), 1e-3)
        assert ledger.population_epsilon(1e-3) == pytest.approx(expected, rel=1e-9)
        assert ledger.population_epsilon(1e-3) < compute_epsilon(
            _demo_run(DEMO_DDG), 1e-3, accountant="rdp"
        )
        # no amplification per client: the unsampled composition
        assert ledger.worst_client_epsilon(1e-3) == pytest.approx(
            distributed_pld_epsilon(dp_accounting.SelfComposedDpEvent(DEMO_DDG, 30), 1e-3), rel=1e-9
        )


@pytest.mark.parametrize(("sigma", "n"), [(1.0, 2), (2.0, 3), (3.0, 2), (1.5, 6)])
def test_closeness_bound_holds_exactly_on_small_cases(sigma: float, n: int) -> None:
    """The theorem's ratio and tail bounds against exact sums of discrete Gaussians."""
    from dp.accounting import ddg_gaussian_closeness

    event = DistributedDiscreteGaussianDpEvent(1.0, 1.0, sigma, n, 1)
    log_tail = -8.0
    result = ddg_gaussian_closeness(event, log_tail)
    if result is None:  # the theorem may give nothing for very little noise
        assert sigma < 2.0
        return
    lam, log_beta = result
    support = np.arange(-400, 401)
    one = np.exp(-(support.astype(float) ** 2) / (2 * sigma**2))
    one /= one.sum()
    total = one
    for _ in range(n - 1):
        total = np.convolve(total, one)
    xs = np.arange(-400 * n, 400 * n + 1)
    s = math.sqrt(n) * sigma
    rounded = stats.norm.cdf((xs + 0.5) / s) - stats.norm.cdf((xs - 0.5) / s)
    half_width = 0.5 + s * math.sqrt(2.0 * (math.log(2.0) - log_tail))
    inside = np.abs(xs) <= half_width
    assert np.max(np.abs(np.log(total[inside] / rounded[inside]))) <= lam
    assert total[~inside].sum() <= math.exp(log_beta)
    assert rounded[~inside].sum() <= math.exp(log_beta)


def test_closeness_correction_for_small_and_large_noise() -> None:
    from dp.accounting import ddg_gaussian_closeness

    def event(sigma: float, n: int = 40, d: int = 1024) -> DistributedDiscreteGaussianDpEvent:
        return DistributedDiscreteGaussianDpEvent(1.0, 1.0, sigma, n, d)

    assert ddg_gaussian_closeness(event(0.9), -50.0) is None  # below sigma = 1: nothing
    corrections = [ddg_gaussian_closeness(event(s), -50.0) for s in (10.0, 1e3, 1e5, 5e7)]
    lams = [c[0] for c in corrections if c is not None]
    assert len(lams) == 4
    assert all(a > b for a, b in zip(lams, lams[1:], strict=False))  # shrinks like 1 / s
    # large scale: lambda = d (B + 1/4) / (2 s^2), B = 1/2 + s sqrt(2 (log 2 + 50))
    s = math.sqrt(40) * 5e7
    b = 0.5 + s * math.sqrt(2 * (math.log(2) + 50))
    assert lams[-1] == pytest.approx(1024 * (b + 0.25) / (2 * s**2), rel=1e-9)
    # the log tail scales with the dimension
    assert corrections[-1] is not None and corrections[-1][1] == pytest.approx(math.log(1024) - 50)


def test_skellam_stays_with_rdp() -> None:
    from dp.accounting import distributed_pld_epsilon
    from secagg.errors import UnsupportedEventError

    skellam = DistributedSkellamDpEvent(10.0, 100.0, 1e4, 10, 16)
    with pytest.raises(UnsupportedEventError, match="RDP"):
        distributed_pld_epsilon(skellam, 1e-5)
