"""The differential privacy noise of a recipe run, round by round.

:class:`RunNoise` holds what the noise of every round follows from -- the DP mode, the
protocol, the threat model, the clip norm, the expected cohort and the noise multiplier
``z`` (or the target epsilon it is calibrated for, on first need, since the noise of
distributed DP depends on the dimension of the updates) -- and derives each round's
encoder, its planned DP event and the threat model the round enforces.
"""

from __future__ import annotations

import warnings

import dp_accounting

from dp.distributed import DistributedDPEncoder
from protocols.options import ProtocolName
from secagg.primitives.encoding import VectorEncoder
from secagg.primitives.simulation import SimulationStream
from secagg.recipe.encoders import SeededNoiseEncoder
from secagg.recipe.options import DPMode, NoisyAggregateWarning
from secagg.recipe.planning import (
    distributed_encoder,
    distributed_ring_bits,
    dp_minimum_threat_model,
    fixed_point_encoder,
)
from secagg.recipe.privacy import calibrate_noise_multiplier
from threat_models.model import ThreatModel

__all__ = ["RunNoise"]


class RunNoise:
    """The noise plan of one run (see the module docstring).

    Args:
        dp: the DP mode.
        protocol: the protocol (it fixes the ring of distributed DP).
        threat_model: the run's adversary.
        clip_norm: ``C`` (``None``: no clipping, no user-level DP).
        clients_per_round: the expected cohort ``m``.
        delta: the run's delta.
        noise_multiplier: ``z``, or ``None`` to calibrate it for ``target_epsilon``.
        target_epsilon: the per-client epsilon to reach after ``rounds`` rounds.
        rounds: the planned number of rounds.
        accountant: the accountant of the calibration.
        noise_stream: with a simulation seed, the stream of the noise and of the rotation.
        rounding_stream: with a simulation seed, the stream of the stochastic rounding.
    """

    def __init__(
        self,
        *,
        dp: DPMode,
        protocol: ProtocolName,
        threat_model: ThreatModel,
        clip_norm: float | None,
        clients_per_round: int,
        delta: float,
        noise_multiplier: float | None,
        target_epsilon: float | None,
        rounds: int | None,
        accountant: str,
        noise_stream: SimulationStream | None = None,
        rounding_stream: SimulationStream | None = None,
    ) -> None:
        self.dp = dp
        self.protocol = protocol
        self.threat_model = threat_model
        self.clip_norm = clip_norm
        self.clients_per_round = clients_per_round
        self.delta = delta
        self.target_epsilon = target_epsilon
        self.rounds = rounds
        self.accountant = accountant
        self._noise_multiplier = noise_multiplier
        self._noise_stream = noise_stream
        self._rounding_stream = rounding_stream

    @property
    def noise_multiplier(self) -> float | None:
        """``z``; ``None`` until calibrated when a ``target_epsilon`` was given."""
        return self._noise_multiplier

    def start(self) -> None:
        """Check the configured noise at construction: warn if it swamps the mean, and
        calibrate central noise at once (it needs no dimension)."""
        if not self.dp.user_level:
            return
        if self._noise_multiplier is None and self.dp is DPMode.CENTRAL:
            self._noise_multiplier = self.calibrate(1)
        if self._noise_multiplier is not None:
            self.warn_if_noise_swamps(self._noise_multiplier, stacklevel=4)

    def round_threat_model(self, n: int) -> ThreatModel:
        """The threat model the protocol enforces this round (:func:`dp_minimum_threat_model`)."""
        if self.dp is not DPMode.DISTRIBUTED:
            return self.threat_model
        return dp_minimum_threat_model(self.threat_model, n)

    def distributed_encoder(
        self, z: float, n: int, d: int, *, rotation_seed: bytes | None = None
    ) -> DistributedDPEncoder:
        """The distributed discrete Gaussian encoder of ``n`` clients, dimension ``d``."""
        return distributed_encoder(
            self.threat_model,
            noise_multiplier=z,
            clip_norm=float(self.clip_norm or 1.0),
            bits=distributed_ring_bits(self.protocol),
            cohort=n,
            dimension=d,
            rotation_seed=rotation_seed,
        )

    def calibrate(self, d: int) -> float:
        """``z`` meeting ``target_epsilon`` after ``rounds`` rounds (1% head-room).

        Calibrated for the headline figure: a client that takes part in every one of the
        ``rounds`` rounds, without amplification by sampling.
        """
        m = self.clients_per_round

        def round_event(z: float) -> dp_accounting.DpEvent:
            if self.dp is DPMode.DISTRIBUTED:
                encoder = self.distributed_encoder(z, m, d)
                return encoder.dp_event(m - self.threat_model.max_dropouts(m))
            return dp_accounting.GaussianDpEvent(z)

        return calibrate_noise_multiplier(
            0.99 * float(self.target_epsilon or 0.0),
            delta=self.delta,
            rounds=int(self.rounds or 1),
            round_event=round_event,
            accountant=self.accountant,
        )

    def _calibrated(self, d: int) -> float:
        if self._noise_multiplier is None:
            self._noise_multiplier = self.calibrate(d)
            self.warn_if_noise_swamps(self._noise_multiplier)
        return self._noise_multiplier

    def round_encoder(
        self,
        n: int,
        d: int,
        bound: float,
        threat_model: ThreatModel,
        *,
        max_weight: float | None = None,
    ) -> tuple[VectorEncoder, dp_accounting.DpEvent, float]:
        """(encoder, planned DP event of the aggregate, noise std per coordinate of the sum).

        ``max_weight`` (a weighted mean) widens the fixed-point range.
        """
        z = self._calibrated(d) if self.dp.user_level else float(self._noise_multiplier or 0.0)
        noise = z * float(self.clip_norm or 0.0)
        if self.dp is DPMode.DISTRIBUTED:
            distributed: DistributedDPEncoder | SeededNoiseEncoder
            if self._noise_stream is not None and self._rounding_stream is not None:
                distributed = SeededNoiseEncoder(
                    self.distributed_encoder(z, n, d, rotation_seed=self._noise_stream.key()),
                    noise=self._noise_stream,
                    rounding=self._rounding_stream.numpy_generator(),
                )
            else:
                distributed = self.distributed_encoder(z, n, d)
            survivors = threat_model.effective_min_aggregate_size(n)
            return distributed, distributed.dp_event(survivors), noise
        # values reach the bound only up to float rounding after clipping
        encoder = fixed_point_encoder(
            bound, cohort=n, clipped=self.clip_norm is not None, max_weight=max_weight
        )
        if self.dp is DPMode.CENTRAL:
            return encoder, dp_accounting.GaussianDpEvent(z), noise
        return encoder, dp_accounting.NonPrivateDpEvent(), 0.0

    def skipped_round_event(self, d: int | None, n: int) -> dp_accounting.DpEvent:
        """The mechanism a skipped round would have applied to a cohort of ``n`` clients
        (the minimum cohort: one more client sampled) with ``d``-long updates."""
        if not self.dp.user_level:
            return dp_accounting.NonPrivateDpEvent()
        if self.dp is DPMode.CENTRAL:
            return dp_accounting.GaussianDpEvent(float(self._noise_multiplier or 0.0))
        if d is None or d < 1:
            # the noise of distributed DP depends on the dimension, unknown before any
            # update: nothing bounds the round, so the population figure becomes infinite
            return dp_accounting.NonPrivateDpEvent()
        encoder = self.distributed_encoder(self._calibrated(d), n, d)
        return encoder.dp_event(n - self.threat_model.max_dropouts(n))

    def warn_if_noise_swamps(self, z: float, *, stacklevel: int = 4) -> None:
        """Warn (:class:`NoisyAggregateWarning`) when the noise on each coordinate of the
        mean exceeds the clip norm."""
        m = self.clients_per_round
        clip = float(self.clip_norm or 1.0)
        std = z * clip / m
        if std <= clip:
            return
        target = (
            "" if self.target_epsilon is None else f"target_epsilon={self.target_epsilon:g} needs "
        )
        warnings.warn(
            f"{target}noise multiplier z={z:.4g}: the noise on each coordinate of the mean "
            f"has standard deviation z * clip_norm / clients_per_round = {std:.4g}, above "
            f"clip_norm={clip:g}, the largest L2 norm the whole mean can have -- the mean "
            "is dominated by noise; raise epsilon, the number of clients per round, or "
            "lower the number of rounds",
            NoisyAggregateWarning,
            stacklevel=stacklevel,
        )
