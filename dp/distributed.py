"""Distributed DP through secure aggregation: every client noises its own update.

Each client adds a share of *integer* noise to its scaled, rounded update before masking,
so the server -- which only ever learns the sum -- never sees an un-noised sum. Two
mechanisms, as in TensorFlow Federated's ``DistributedDpSumFactory``:

* distributed discrete Gaussian: each client adds ``N_Z(0, sigma^2)`` per coordinate
  (Kairouz, Liu, Steinke, ICML 2021);
* distributed Skellam: each client adds ``Poisson(mu) - Poisson(mu)`` (Agarwal, Kairouz,
  Liu, NeurIPS 2021).

The pipeline (client, :meth:`DistributedDPEncoder.encode`)::

    x in R^d -> pad to D = 2^ceil(log2 d) -> rotate: y = H S x / sqrt(D)
      -> clip: y <- y min(1, c / ||y||) -> scale: z = s y
      -> randomized rounding (conditional on ||round(z)|| <= Delta2 when beta > 0)
      -> add integer noise -> reduce mod 2^b (modular clipping)   -> masking protocol

``H`` is the Walsh-Hadamard matrix and ``S`` a diagonal of random signs expanded from a
32-byte seed shared by all clients and the server for the round (public, but fresh per
round and unpredictable to clients when they compute their updates); the rotation spreads
the update's energy evenly over coordinates (each about ``c / sqrt(D)``), which keeps
modular clipping rare. Rotation preserves the L2 norm, so clipping before or after it is
the same. The server (:meth:`DistributedDPEncoder.decode_sum`) takes the sum of ``n``
encodings mod ``2^b``, centres it in ``[-2^(b-1), 2^(b-1))``, divides by ``s``, undoes the
rotation and drops the padding.

Sensitivity (scaled domain, :func:`rounded_l2_sensitivity`): with ``c~ = c s``,
``Delta2 = min(c~ + sqrt(D), sqrt(c~^2 + D/4 + sqrt(2 ln(1/beta)) (c~ + sqrt(D)/2)))``
(the second term only for ``beta > 0``) and ``Delta1 = Delta2 min(sqrt(D), Delta2)``.

Parameter selection (:func:`select_parameters`)
-----------------------------------------------
Inputs: target noise multiplier ``z`` (central noise standard deviation over the clip
norm ``c``, TFF's convention), bits ``b``, expected cohort ``n``, dimension ``d``. Outputs
the scale ``s`` and each client's noise. With ``k = sqrt(2) erfcinv(p_mod)`` standard
deviations of head-room, ``s`` is chosen (Kairouz et al., Sections 4.2 and 4.4) so that
``k`` standard deviations of an aggregate coordinate fill the ring::

    2 k sqrt(rho (c s n)^2 / D + n (1/4 + (s sigma_c)^2)) = 2^b,   i.e.
    s = sqrt(2^(2b) - n k^2) / (2 k sqrt(rho c^2 n^2 / D + n sigma_c^2))

(signal of ``n`` aligned clients spread by the rotation, per-client rounding variance at
most 1/4, noise). The trade-off between the knobs:

* **bits** buy resolution: ``s`` grows like ``2^b``. A small ``s`` means coarse rounding:
  the rounding error (at most 1/2 per coordinate and client, i.e. ``1/(2s)`` unscaled)
  becomes visible next to the noise, and the sensitivity inflation ``Delta2 / c~ - 1``
  (about ``sqrt(D) / c~``) weakens privacy for the same noise. Each extra bit halves both.
* **modular-clipping probability** ``p_mod`` is the chance that one aggregate coordinate
  wraps around (a catastrophic error on that coordinate). Lowering it by 100x costs about
  ``log2(k'/k)``, a third of a bit at these sizes.
* **cohort size**: ``n`` clients need ``log2(n)/2`` more bits for the noise and up to
  ``log2(n)`` for aligned signals.

Scales are capped so that the per-client noise stays inside the samplers' exact ranges
(``sigma <= 2^40`` for the discrete Gaussian, ``mu <= 2^40`` for Skellam); the cap only
lowers the wrap-around probability further.

Dropouts and the noise actually present
---------------------------------------
If clients drop out after noising, the survivors' noise adds up to less than the target.
``dropout_margin`` makes every client noise for a smaller assumed cohort: with
``D_m = floor(dropout_margin n)`` tolerated dropouts, each adds variance
``(z c)^2 / (n - D_m - C)`` (``C`` assumed colluders, below), so the target is met as long
as at most ``D_m`` clients drop. The DP event of a decoded sum
(:meth:`DistributedDPEncoder.dp_event`) always describes the noise *actually present*:
``num_clients`` is the number of surviving, non-colluding contributors, never the
planned cohort.

Sybils and collusion
--------------------
A server that controls clients (or simulates Sybil clients) knows their noise shares and
can subtract them; only honest clients' noise protects an honest client. With
``colluding_fraction`` ``gamma``, ``C = floor(gamma n)`` clients are assumed to collude:
the noise is sized so that ``n - D_m - C`` honest survivors reach the target, and events
count only ``survivors - C`` clients. In the extreme where the server controls every
client but one, the target's own share is all that is left: sizing for that means each
client adds the full central noise (local DP).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import dp_accounting
import numpy as np
import numpy.typing as npt
from scipy import special

from dp.events import DistributedDiscreteGaussianDpEvent, DistributedSkellamDpEvent
from dp.samplers import (
    MAX_DISCRETE_GAUSSIAN_SIGMA,
    MAX_POISSON_MU,
    discrete_gaussian_variance,
    sample_discrete_gaussian,
    sample_skellam,
)
from secagg.errors import (
    CapacityError,
    EncodingError,
    InfeasibleThreatModelError,
    InvalidParameterError,
)
from secagg.primitives.encoding import from_ring_centered, ring_mask
from secagg.primitives.prg import MaskPRG
from secagg.validation import require_int, require_real

__all__ = [
    "DistributedMechanism",
    "RandomizedHadamard",
    "DistributedDPParameters",
    "DistributedDPEncoder",
    "select_parameters",
    "select_parameters_for_threat_model",
    "rounded_l2_sensitivity",
    "rounded_l1_sensitivity",
    "modclip_stddevs",
    "MAX_PADDED_DIMENSION",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]

#: Largest padded dimension supported (memory: a few float64 vectors of this length).
MAX_PADDED_DIMENSION = 1 << 28
_SIGN_NONCE = b"secagg-fl/hd-sgn"  # domain separation of the rotation's sign stream
# Clip a hair below c: the float64 norm of D <= 2^28 terms is within D 2^-53 < 1e-7 of
# the true one, so the clipped update's true norm never exceeds c.
_CLIP_SLACK = 1.0 - 1e-6
_MAX_ROUNDING_TRIES = 10_000
# Mirrors threat_models: floor(fraction * n) without 0.1 * 30 rounding down to 2.
_FRACTION_EPS = 1e-12


class DistributedMechanism(str, Enum):
    """The integer noise each client adds."""

    DISCRETE_GAUSSIAN = "distributed_dgauss"
    SKELLAM = "distributed_skellam"


def modclip_stddevs(modclip_prob: float) -> float:
    """``k`` with ``P[|N(0,1)| > k] = modclip_prob``, i.e. ``sqrt(2) erfcinv(p)``."""
    if not (isinstance(modclip_prob, (int, float)) and 0.0 < float(modclip_prob) < 1.0):
        raise InvalidParameterError(f"modclip_prob must lie in (0, 1), got {modclip_prob!r}")
    return float(math.sqrt(2.0) * special.erfcinv(float(modclip_prob)))


def rounded_l2_sensitivity(scaled_clip: float, dimension: int, beta: float) -> float:
    """``Delta2`` after (conditional) randomized rounding of a vector of norm ``<= scaled_clip``.

    ``min(c~ + sqrt(D), sqrt(c~^2 + D/4 + sqrt(2 ln(1/beta)) (c~ + sqrt(D)/2)))``, the second
    term only for ``beta > 0`` (Kairouz, Liu, Steinke 2021; TFF's ``inflated_l2_norm_bound``).
    """
    if not (math.isfinite(scaled_clip) and scaled_clip > 0):
        raise InvalidParameterError("scaled_clip must be positive and finite")
    if not (isinstance(dimension, int) and dimension >= 1):
        raise InvalidParameterError("dimension must be a positive int")
    if not 0.0 <= beta < 1.0:
        raise InvalidParameterError("beta must lie in [0, 1)")
    root_d = math.sqrt(dimension)
    bound = scaled_clip + root_d
    if beta > 0.0:
        conditional = math.sqrt(
            scaled_clip**2
            + dimension / 4.0
            + math.sqrt(2.0 * math.log(1.0 / beta)) * (scaled_clip + root_d / 2.0)
        )
        bound = min(bound, conditional)
    return bound


def rounded_l1_sensitivity(l2_sensitivity: float, dimension: int) -> float:
    """``Delta1 = Delta2 min(sqrt(D), Delta2)`` (integer vectors: ``||v||_1 <= ||v||_2^2``)."""
    return l2_sensitivity * min(math.sqrt(dimension), l2_sensitivity)


class RandomizedHadamard:
    """The orthogonal rotation ``R = H S / sqrt(D)`` with random signs ``S`` from a seed.

    Args:
        seed: 32 bytes shared by the round's clients and server.
        dimension: the input length ``d``; vectors are zero-padded to ``D = 2^ceil(log2 d)``.
    """

    __slots__ = ("seed", "dimension", "padded_dimension", "_signs")

    def __init__(self, seed: bytes, dimension: int) -> None:
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != 32:
            raise InvalidParameterError("rotation seed must be exactly 32 bytes")
        dimension = require_int("dimension", dimension, lo=1)
        padded = 1 << (dimension - 1).bit_length()
        if padded > MAX_PADDED_DIMENSION:
            raise CapacityError(f"dimension {dimension} pads to {padded} > {MAX_PADDED_DIMENSION}")
        self.seed = bytes(seed)
        self.dimension = dimension
        self.padded_dimension = padded
        words = MaskPRG(self.seed, 64, nonce=_SIGN_NONCE).expand((padded + 63) // 64)
        bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:padded]
        self._signs = 1.0 - 2.0 * bits.astype(np.float64)

    @staticmethod
    def _fwht(x: F64) -> F64:
        """Unnormalised fast Walsh-Hadamard transform of a power-of-two-length vector (copy)."""
        y = np.array(x, dtype=np.float64, copy=True)
        n = y.shape[0]
        h = 1
        while h < n:
            v = y.reshape(n // (2 * h), 2, h)
            a = v[:, 0, :].copy()
            v[:, 0, :] += v[:, 1, :]
            np.subtract(a, v[:, 1, :], out=v[:, 1, :])
            h *= 2
        return y

    def rotate(self, x: F64) -> F64:
        """``R [x; 0]``: pad to ``D`` and rotate (length ``D``)."""
        if x.shape != (self.dimension,):
            raise EncodingError(
                f"expected a vector of length {self.dimension}, got shape {x.shape}"
            )
        padded = np.zeros(self.padded_dimension, dtype=np.float64)
        padded[: self.dimension] = x
        padded *= self._signs
        out = self._fwht(padded)
        out *= 1.0 / math.sqrt(self.padded_dimension)
        return out

    def unrotate(self, y: F64) -> F64:
        """``R^T y`` truncated to the first ``d`` coordinates."""
        if y.shape != (self.padded_dimension,):
            raise EncodingError(
                f"expected a vector of length {self.padded_dimension}, got shape {y.shape}"
            )
        out = self._fwht(y)
        out *= self._signs
        out *= 1.0 / math.sqrt(self.padded_dimension)
        return out[: self.dimension]


@dataclass(frozen=True)
class DistributedDPParameters:
    """Everything clients and server must agree on for one distributed-DP configuration.

    Build it with :func:`select_parameters`. Scaled quantities are in the integer domain
    where the noise is added.

    Attributes:
        mechanism: discrete Gaussian or Skellam.
        noise_multiplier: target ``z``: honest survivors' total noise std is ``z c`` (unscaled).
        clip_norm: ``c``, the L2 clip of each (rotated) client update.
        bits: ring exponent ``b``; the sum lives in Z_(2^b).
        expected_clients: ``n``, the largest cohort summed (the encoder's capacity).
        dimension: ``d``, the length of client vectors.
        padded_dimension: ``D = 2^ceil(log2 d)``.
        scale: ``s``.
        modclip_prob: target probability that one aggregate coordinate wraps around.
        beta: conditional-rounding parameter (0: unconditional randomized rounding).
        rho: flatness of the rotation assumed in choosing ``s`` (1 for Hadamard).
        dropout_margin: fraction of the cohort that may drop with the target still met.
        colluding_fraction: fraction of the cohort assumed to collude with the server.
        colluding_clients: ``C = floor(colluding_fraction n)``.
        noise_clients: ``n - floor(dropout_margin n) - C``: honest survivors the noise is
            sized for.
        local_stddev: each client's noise standard deviation, unscaled
            (``z c / sqrt(noise_clients)``).
        l2_sensitivity: ``Delta2`` (scaled).
        l1_sensitivity: ``Delta1`` (scaled).
    """

    mechanism: DistributedMechanism
    noise_multiplier: float
    clip_norm: float
    bits: int
    expected_clients: int
    dimension: int
    padded_dimension: int
    scale: float
    modclip_prob: float
    beta: float
    rho: float
    dropout_margin: float
    colluding_fraction: float
    colluding_clients: int
    noise_clients: int
    local_stddev: float
    l2_sensitivity: float
    l1_sensitivity: float

    @property
    def scaled_clip(self) -> float:
        """``c~ = c s``."""
        return self.clip_norm * self.scale

    @property
    def local_scaled_stddev(self) -> float:
        """Each client's noise standard deviation in the scaled domain, ``s sigma_c``."""
        return self.local_stddev * self.scale

    @property
    def local_sigma(self) -> float:
        """Discrete Gaussian parameter of each client's noise (scaled)."""
        return self.local_scaled_stddev

    @property
    def local_mu(self) -> float:
        """Skellam parameter of each client's noise (scaled): variance ``2 mu = (s sigma_c)^2``."""
        return self.local_scaled_stddev**2 / 2.0

    @property
    def local_noise_variance(self) -> float:
        """Exact variance of one client's noise per coordinate (scaled)."""
        if self.noise_multiplier == 0:
            return 0.0
        if self.mechanism is DistributedMechanism.DISCRETE_GAUSSIAN:
            return discrete_gaussian_variance(self.local_sigma)
        return 2.0 * self.local_mu

    @property
    def sensitivity_inflation(self) -> float:
        """``Delta2 / c~``: how much rounding inflates the sensitivity (1 is none)."""
        return self.l2_sensitivity / self.scaled_clip

    def effective_noise_multiplier(self, num_noise_clients: int | None = None) -> float:
        """Honest noise std over the rounded sensitivity, ``sqrt(m) s sigma_c / Delta2``.

        ``m`` defaults to :attr:`noise_clients`. It is below ``z`` by the factor
        :attr:`sensitivity_inflation`; the accountant also charges the discreteness terms.
        """
        m = self.noise_clients if num_noise_clients is None else num_noise_clients
        return math.sqrt(max(m, 0)) * self.local_scaled_stddev / self.l2_sensitivity

    def aggregate_error_stddev(self, num_summands: int) -> float:
        """Standard deviation of one decoded-sum coordinate's noise (unscaled), no rounding.

        Noise only: ``sqrt(num_summands * Var(local noise)) / s``. Randomized rounding adds
        at most ``sqrt(num_summands / 4) / s`` in quadrature.
        """
        return math.sqrt(num_summands * self.local_noise_variance) / self.scale

    def modular_clip_probability(self, num_summands: int | None = None) -> float:
        """Gaussian estimate of the chance that one aggregate coordinate wraps around.

        Uses the same per-coordinate standard deviation as the scale selection
        (aligned signals, worst case), so it equals ``modclip_prob`` at ``n`` summands.
        """
        m = self.expected_clients if num_summands is None else num_summands
        std = math.sqrt(
            self.rho * (self.scaled_clip * m) ** 2 / self.padded_dimension
            + m * (0.25 + self.local_scaled_stddev**2)
        )
        return float(special.erfc((2.0 ** (self.bits - 1)) / std / math.sqrt(2.0)))

    def summary(self) -> dict[str, float | int | str]:
        """The trade-off figures in one flat dict (for logs and reports)."""
        return {
            "mechanism": self.mechanism.value,
            "bits": self.bits,
            "scale": self.scale,
            "padded_dimension": self.padded_dimension,
            "noise_clients": self.noise_clients,
            "colluding_clients": self.colluding_clients,
            "local_scaled_stddev": self.local_scaled_stddev,
            "l2_sensitivity": self.l2_sensitivity,
            "sensitivity_inflation": self.sensitivity_inflation,
            "effective_noise_multiplier": self.effective_noise_multiplier(),
            "rounding_to_noise_stddev": (0.5 / self.local_scaled_stddev)
            if self.local_scaled_stddev
            else math.inf,
            "modular_clip_probability": self.modular_clip_probability(),
        }


def select_parameters(
    *,
    mechanism: DistributedMechanism | str,
    noise_multiplier: float,
    clip_norm: float,
    bits: int,
    expected_clients: int,
    dimension: int,
    modclip_prob: float = 1e-6,
    beta: float = math.exp(-0.5),
    dropout_margin: float = 0.0,
    colluding_fraction: float = 0.0,
    rho: float = 1.0,
) -> DistributedDPParameters:
    """Choose the scale and the per-client noise (see the module docstring for the maths).

    Args:
        mechanism: :class:`DistributedMechanism` (or its value).
        noise_multiplier: target ``z >= 0`` relative to ``clip_norm``; 0 adds no noise.
        clip_norm: ``c > 0``.
        bits: ring exponent ``b`` in ``[2, 62]``.
        expected_clients: ``n``, the largest cohort that will be summed.
        dimension: ``d``, the client vector length.
        modclip_prob: target wrap-around probability per aggregate coordinate (default
            1e-6, about 4.9 standard deviations of head-room).
        beta: conditional randomized rounding parameter in ``[0, 1)``; the default
            ``e^-1/2`` is Kairouz et al.'s recommendation (0: unconditional rounding).
        dropout_margin: fraction of the cohort that may drop after noising with the
            target still met.
        colluding_fraction: fraction of the cohort assumed to collude with the server;
            their noise is not counted.
        rho: flatness of the rotated coordinates (1 for the randomized Hadamard).

    Returns:
        The agreed :class:`DistributedDPParameters`.

    Raises:
        InvalidParameterError: an argument outside its domain, or too few bits for any
            meaningful scale (scaled noise below 1/2 with noise requested).
        InfeasibleThreatModelError: the margin and colluders leave no honest client.
        CapacityError: ``2^(2b) <= n k^2``: the ring cannot hold ``n`` clients' rounding.
    """
    try:
        mech = DistributedMechanism(mechanism)
    except ValueError:
        raise InvalidParameterError(
            f"mechanism must be one of {[m.value for m in DistributedMechanism]}, got {mechanism!r}"
        ) from None
    z = require_real("noise_multiplier", noise_multiplier, lo=0.0, hi=1e6)
    c = require_real("clip_norm", clip_norm, lo=0.0, hi=1e12, lo_open=True)
    b = require_int("bits", bits, lo=2, hi=62)
    n = require_int("expected_clients", expected_clients, lo=1, hi=1 << 30)
    d = require_int("dimension", dimension, lo=1, hi=MAX_PADDED_DIMENSION)
    p_mod = require_real("modclip_prob", modclip_prob, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    bt = require_real("beta", beta, lo=0.0, hi=1.0, hi_open=True)
    margin = require_real("dropout_margin", dropout_margin, lo=0.0, hi=1.0, hi_open=True)
    gamma = require_real("colluding_fraction", colluding_fraction, lo=0.0, hi=1.0, hi_open=True)
    rh = require_real("rho", rho, lo=0.0, hi=1e6, lo_open=True)

    padded = 1 << (d - 1).bit_length()
    colluders = math.floor(gamma * n + _FRACTION_EPS)
    dropouts = math.floor(margin * n + _FRACTION_EPS)
    noise_clients = n - colluders - dropouts
    if noise_clients < 1:
        raise InfeasibleThreatModelError(
            f"{colluders} colluders and a margin of {dropouts} dropouts leave no honest client "
            f"out of {n}; lower colluding_fraction or dropout_margin, or grow the cohort"
        )
    local_stddev = z * c / math.sqrt(noise_clients)
    k = modclip_stddevs(p_mod)
    head_room = 2.0 ** (2 * b) - n * k * k
    if head_room <= 0:
        raise CapacityError(
            f"{b} bits cannot hold {n} clients at modclip_prob={p_mod:g} "
            f"(need 2^(2b) > n k^2 with k = {k:.2f}); increase bits, or raise modclip_prob"
        )
    scale = math.sqrt(head_room) / (
        2.0 * k * math.sqrt(rh * c * c * n * n / padded + n * local_stddev**2)
    )
    # keep the per-client noise inside the samplers' exact ranges and c~ exactly representable
    if local_stddev > 0:
        max_scaled_std = (
            MAX_DISCRETE_GAUSSIAN_SIGMA
            if mech is DistributedMechanism.DISCRETE_GAUSSIAN
            else math.sqrt(2 * MAX_POISSON_MU)
        )
        scale = min(scale, max_scaled_std * (1.0 - 1e-9) / local_stddev)
    scale = min(scale, 2.0**50 / c)
    if z > 0 and local_stddev * scale < 0.5:
        raise InvalidParameterError(
            f"scaled per-client noise {local_stddev * scale:.3g} < 1/2: {b} bits leave too coarse "
            "a grid for this noise; increase bits"
        )
    l2 = rounded_l2_sensitivity(c * scale, padded, bt)
    return DistributedDPParameters(
        mechanism=mech,
        noise_multiplier=z,
        clip_norm=c,
        bits=b,
        expected_clients=n,
        dimension=d,
        padded_dimension=padded,
        scale=scale,
        modclip_prob=p_mod,
        beta=bt,
        rho=rh,
        dropout_margin=margin,
        colluding_fraction=gamma,
        colluding_clients=colluders,
        noise_clients=noise_clients,
        local_stddev=local_stddev,
        l2_sensitivity=l2,
        l1_sensitivity=rounded_l1_sensitivity(l2, padded),
    )


class _CohortBounds(Protocol):
    """What :func:`select_parameters_for_threat_model` needs from a threat model."""

    def max_colluders(self, n: int) -> int: ...

    def max_dropouts(self, n: int) -> int: ...


def select_parameters_for_threat_model(
    threat_model: _CohortBounds,
    *,
    mechanism: DistributedMechanism | str,
    noise_multiplier: float,
    clip_norm: float,
    bits: int,
    expected_clients: int,
    dimension: int,
    modclip_prob: float = 1e-6,
    beta: float = math.exp(-0.5),
) -> DistributedDPParameters:
    """:func:`select_parameters` with the margin and colluders taken from a threat model.

    The threat model (e.g. :class:`threat_models.ThreatModel`) supplies
    ``max_colluders(n)`` (noise not counted) and ``max_dropouts(n)`` (the dropout margin).
    """
    n = require_int("expected_clients", expected_clients, lo=1, hi=1 << 30)
    colluders = int(threat_model.max_colluders(n))
    dropouts = int(threat_model.max_dropouts(n))
    # exact fractions: floor(f n + eps) of these recovers the same counts
    return select_parameters(
        mechanism=mechanism,
        noise_multiplier=noise_multiplier,
        clip_norm=clip_norm,
        bits=bits,
        expected_clients=n,
        dimension=dimension,
        modclip_prob=modclip_prob,
        beta=beta,
        dropout_margin=dropouts / n,
        colluding_fraction=colluders / n,
    )


class DistributedDPEncoder:
    """A :class:`secagg.primitives.encoding.VectorEncoder` that rotates, clips, rounds and noises.

    Plug it into any masking protocol in place of a fixed-point encoder: each client's
    :meth:`encode` returns its noised update in Z_(2^b) (length ``D``); the server's
    :meth:`decode_sum` turns the modular sum of ``n`` encodings into the noised sum of the
    clipped updates (length ``d``) and records :attr:`last_event`.

    Args:
        parameters: the agreed :class:`DistributedDPParameters`.
        rotation_seed: the round's shared 32-byte seed; default a fresh ``os.urandom(32)``
            (the server then sends :attr:`rotation_seed` to the clients). Use a new seed
            every round (:meth:`for_new_round`).
        rounding_rng: numpy generator for the randomized rounding only (not secret);
            default OS-seeded. The noise always comes from the AES-CTR samplers.
    """

    def __init__(
        self,
        parameters: DistributedDPParameters,
        *,
        rotation_seed: bytes | None = None,
        rounding_rng: np.random.Generator | None = None,
    ) -> None:
        if not isinstance(parameters, DistributedDPParameters):
            raise InvalidParameterError("parameters must come from select_parameters()")
        self._params = parameters
        self._rotation = RandomizedHadamard(
            os.urandom(32) if rotation_seed is None else rotation_seed, parameters.dimension
        )
        self._rng = rounding_rng if rounding_rng is not None else np.random.default_rng()
        self._mask = ring_mask(parameters.bits)
        self._last_event: dp_accounting.DpEvent | None = None

    @property
    def parameters(self) -> DistributedDPParameters:
        """The agreed configuration this encoder implements."""
        return self._params

    @property
    def bits(self) -> int:
        """Bits of the ring the encodings live in."""
        return self._params.bits

    @property
    def max_clients(self) -> int:
        """The configured cohort: the most encodings one decoded sum may hold."""
        return self._params.expected_clients

    @property
    def rotation_seed(self) -> bytes:
        """The round's public rotation seed (clients and server must share it)."""
        return self._rotation.seed

    @property
    def last_event(self) -> dp_accounting.DpEvent | None:
        """The DP event of the most recent :meth:`decode_sum` (``None`` before any)."""
        return self._last_event

    def for_new_round(self, rotation_seed: bytes | None = None) -> DistributedDPEncoder:
        """A fresh encoder with the same parameters and a new rotation seed."""
        return DistributedDPEncoder(
            self._params, rotation_seed=rotation_seed, rounding_rng=self._rng
        )

    def encoded_length(self, d: int) -> int:
        """``D``: encodings are padded to a power of two.

        Raises:
            EncodingError: ``d`` differs from the configured dimension.
        """
        if d != self._params.dimension:
            raise EncodingError(
                f"this encoder is configured for dimension {self._params.dimension}, got {d}"
            )
        return self._params.padded_dimension

    def _round(self, z: F64, rng: np.random.Generator) -> I64:
        """Randomized rounding, repeated until ``||r||_2 <= Delta2`` when that bound is conditional.

        With ``e = r - z`` (exact in float64 since ``|e_i| < 1``), ``||r||^2 = ||z||^2 +
        2<z, e> + ||e||^2`` and ``||z|| <= c~``, so ``2<z, e> + ||e||^2 <= D/4 +
        sqrt(2 ln(1/beta)) (c~ + sqrt(D)/2)`` guarantees ``||r|| <= Delta2``. It is checked
        with a rigorous bound on the float64 error of the two dot products; Kairouz et al.
        bound the failure probability of one try by ``beta``.
        """
        p = self._params
        dim = z.shape[0]
        base = np.floor(z)
        frac = z - base
        conditional = p.beta > 0 and p.l2_sensitivity < p.scaled_clip + math.sqrt(dim)
        budget = (
            dim / 4.0
            + math.sqrt(2.0 * math.log(1.0 / p.beta)) * (p.scaled_clip + math.sqrt(dim) / 2.0)
            if conditional
            else 0.0
        )
        gamma = dim * 2.0**-53 / (1.0 - dim * 2.0**-53)
        abs_z = np.abs(z)
        for _ in range(_MAX_ROUNDING_TRIES):
            r = base + (rng.random(dim) < frac)
            if not conditional:
                return r.astype(np.int64)
            e = r - z
            ee = float(np.dot(e, e))
            excess = 2.0 * float(np.dot(z, e)) + ee
            error = gamma * (2.0 * float(np.dot(abs_z, np.abs(e))) + ee) + 2.0**-50 * (
                float(abs_z.sum()) + dim
            )
            if excess + error <= budget:
                return r.astype(np.int64)
        raise EncodingError("conditional randomized rounding did not succeed; check the parameters")

    def encode(self, values: npt.ArrayLike, *, rng: np.random.Generator | None = None) -> U64:
        """Client side: clip, rotate, scale, round, noise, reduce mod 2^b.

        Args:
            values: the client's update, a 1-D real vector of the configured dimension
                (any norm: it is clipped here).
            rng: generator for the randomized rounding only (as
                :meth:`secagg.primitives.encoding.FixedPointEncoder.encode`); default the encoder's.

        Returns:
            ``uint64`` vector of length ``D`` with entries in Z_(2^b).

        Raises:
            EncodingError: wrong shape, non-finite or non-numeric input.
        """
        p = self._params
        try:
            x = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise EncodingError(f"update is not a real vector: {exc}") from None
        if x.ndim != 1 or x.shape[0] != p.dimension:
            raise EncodingError(f"expected a vector of length {p.dimension}, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise EncodingError("update contains NaN or infinity")
        y = self._rotation.rotate(x)
        target = p.clip_norm * _CLIP_SLACK
        norm = float(np.linalg.norm(y))
        if norm > target:
            y *= target / norm
        y *= p.scale
        rounded = self._round(y, self._rng if rng is None else rng)
        if p.noise_multiplier > 0:
            if p.mechanism is DistributedMechanism.DISCRETE_GAUSSIAN:
                rounded += sample_discrete_gaussian(p.local_sigma, p.padded_dimension)
            else:
                rounded += sample_skellam(p.local_mu, p.padded_dimension)
        return rounded.view(np.uint64) & self._mask

    def decode_sum(self, summed: npt.ArrayLike, n: int) -> F64:
        """Server side: the noised sum of ``n`` clients' clipped updates (length ``d``).

        Also records :attr:`last_event` (:meth:`dp_event` of ``n``).

        Raises:
            InvalidParameterError: ``n`` not a non-negative int.
            CapacityError: ``n`` exceeds the configured cohort.
            EncodingError: wrong shape.
        """
        n = require_int("n", n, lo=0)
        if n > self.max_clients:
            raise CapacityError(
                f"sum of {n} encodings exceeds the configured cohort of {self.max_clients}"
            )
        s = np.asarray(summed)
        if s.shape != (self._params.padded_dimension,):
            raise EncodingError(
                f"expected a sum of length {self._params.padded_dimension}, got shape {s.shape}"
            )
        if s.dtype.kind not in "iu":
            raise EncodingError(f"expected ring elements (integers), got dtype {s.dtype}")
        centred = from_ring_centered(s.astype(np.uint64), self._params.bits).astype(np.float64)
        centred /= self._params.scale
        out = self._rotation.unrotate(centred)
        self._last_event = self.dp_event(int(n))
        return out

    def dp_event(self, num_contributors: int) -> dp_accounting.DpEvent:
        """The DP event of a released sum of ``num_contributors`` encodings.

        ``num_clients`` in the event is ``num_contributors - colluding_clients``: only
        honest survivors' noise counts. ``NonPrivateDpEvent`` when no noise is configured
        or no honest contributor remains.
        """
        num_contributors = require_int("num_contributors", num_contributors)
        p = self._params
        honest = int(num_contributors) - p.colluding_clients
        if p.noise_multiplier == 0 or honest < 1:
            return dp_accounting.NonPrivateDpEvent()
        if p.mechanism is DistributedMechanism.DISCRETE_GAUSSIAN:
            return DistributedDiscreteGaussianDpEvent(
                l2_sensitivity=p.l2_sensitivity,
                l1_sensitivity=p.l1_sensitivity,
                local_sigma=p.local_sigma,
                num_clients=honest,
                dimension=p.padded_dimension,
            )
        return DistributedSkellamDpEvent(
            l2_sensitivity=p.l2_sensitivity,
            l1_sensitivity=p.l1_sensitivity,
            local_mu=p.local_mu,
            num_clients=honest,
            dimension=p.padded_dimension,
        )
