"""What one round of the recipe did: :class:`RoundReport`."""

from __future__ import annotations

from dataclasses import dataclass

from secagg.recipe.options import ClientId

__all__ = ["RoundReport"]


@dataclass(frozen=True)
class RoundReport:
    """What one call to :meth:`SecureAggregator.mean` / :meth:`~SecureAggregator.sum` did.

    Attributes:
        round: 1-based round number.
        cohort: the client ids that were given.
        survivors: the ids whose updates are in the aggregate.
        clipped: how many updates the L2 clip shrank.
        epsilon: cumulative epsilon after this round, as :attr:`SecureAggregator.epsilon`:
            the worst client's per-client user-level epsilon (no amplification; holds
            against the server) for ``central`` and ``distributed``, the largest client's
            sample-level for ``local``, ``None`` for ``none``.
        delta: the delta of ``epsilon``.
        noise_stddev: per-coordinate standard deviation of the DP noise in the sum
            (0 without user-level DP).
        seconds: wall time of the round.
        max_abs_difference: with ``verify``: the largest coordinate difference between the
            secure aggregate and the same aggregate computed in plaintext from the same
            client inputs (clipped, quantised and noised exactly as they entered the
            protocol) -- zero up to float rounding when the protocol is correct.
        max_abs_dp_error: only with ``verify="unsafe-plaintext"``: the largest coordinate
            difference between the released sum and the plaintext sum of the clipped
            updates (DP noise plus quantisation). Computed from the un-noised sum, so it is
            a release about the data that the ledger does not cover: keep it private.
        epsilon_amplified: cumulative population-level epsilon with amplification, as
            :attr:`SecureAggregator.amplified_epsilon` (see
            :data:`~secagg.recipe.privacy.AMPLIFICATION_ASSUMPTION`).
        sampled: whether the cohort came from :meth:`SecureAggregator.sample_cohort` for
            this round (only then is amplification by sampling counted).
    """

    round: int
    cohort: tuple[ClientId, ...]
    survivors: tuple[ClientId, ...]
    clipped: int
    epsilon: float | None
    delta: float | None
    noise_stddev: float
    seconds: float
    max_abs_difference: float | None = None
    max_abs_dp_error: float | None = None
    epsilon_amplified: float | None = None
    sampled: bool = False

    @property
    def dropped(self) -> tuple[ClientId, ...]:
        """Clients of the cohort whose update is not in the aggregate."""
        alive = set(self.survivors)
        return tuple(c for c in self.cohort if c not in alive)
