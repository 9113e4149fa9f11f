"""Canary clients for auditing a real federated training run in one run.

Following the one-run audit of Steinke, Nasr, Jagielski (2023) applied to federated
learning with canary clients (Andrew et al., "One-shot empirical privacy estimation for
federated learning", 2023): ``m`` extra clients are created, each *included* in the run
independently with probability 1/2. An included canary behaves like any other client
whose update is a fixed random direction of L2 norm equal to the clipping norm (so
clipping leaves it unchanged and it uses the whole sensitivity); an excluded canary never
takes part. The updates go through the same DP pipeline (clipping, noise, quantisation,
secure aggregation) as every other client.

After training, each canary is scored by the cosine between what the server saw -- the
sum of the released aggregates (:meth:`CanaryClients.observe`) or the final model minus
the initial model -- and the canary's direction. Random directions in high dimension are
nearly orthogonal, so included canaries score higher. The scores and the secret
membership feed :func:`dp.audit.one_run_audit`, giving an epsilon lower bound for the
user-level guarantee of the run: if the run is (epsilon, delta)-DP with respect to each
client, the bound exceeds epsilon with probability at most the significance level. By
default the auditor abstains on the least confident canaries: it tries every number of
guesses of :func:`dp.audit.abstention_grid` with the significance level split evenly
across them (Bonferroni) and reports the best; fixing ``num_positive_guesses`` /
``num_negative_guesses`` in advance tests that one choice at the full level.

Typical use in a FedAvg loop::

    canaries = CanaryClients(num_canaries=500, dimension=d, norm=clip_norm)
    for round in range(T):
        updates = {cid: local_update(cid) for cid in sampled_clients}
        updates = canaries.inject(updates, sampling_rate=q)   # canaries sampled like clients
        aggregate = secure_aggregate_with_dp(updates)         # what the server learns
        canaries.observe(aggregate)
    result = canaries.audit(delta=1e-5)                       # OneRunAuditResult

Membership is drawn with :mod:`secrets` unless a ``seed`` is given (reproducible
experiments only). Directions are regenerated on demand from per-canary seeds, so memory
stays ``O(dimension)`` whatever the number of canaries.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from dp.audit import OneRunAuditResult, one_run_audit
from secagg.errors import InvalidParameterError
from secagg.validation import is_int, require_int, require_positive, require_real

__all__ = ["CanaryClients"]

K = TypeVar("K", bound=Hashable)
FloatArray = npt.NDArray[np.float64]


class CanaryClients:
    """A set of canary clients, half of them (at random) included in the run.

    Args:
        num_canaries: m, the number of canaries (>= 2).
        dimension: length of the flattened model update.
        norm: L2 norm of each canary update (use the clipping norm).
        id_prefix: canary client ids are ``f"{id_prefix}{i}"``.
        seed: fixes membership and directions, for reproducible experiments only.
    """

    def __init__(
        self,
        num_canaries: int,
        dimension: int,
        *,
        norm: float,
        id_prefix: str = "canary-",
        seed: int | None = None,
    ) -> None:
        num_canaries = require_int("num_canaries", num_canaries, lo=2)
        dimension = require_int("dimension", dimension, lo=2)
        self._norm = require_positive("norm", norm)
        if not isinstance(id_prefix, str):
            raise InvalidParameterError("id_prefix must be a string")
        if seed is not None and not (is_int(seed) and seed >= 0):
            raise InvalidParameterError("seed must be a non-negative integer or None")
        self._m = num_canaries
        self._d = dimension
        self._ids = tuple(f"{id_prefix}{i}" for i in range(num_canaries))
        self._index = {cid: i for i, cid in enumerate(self._ids)}
        if seed is None:
            bits = secrets.randbits(num_canaries)
            included = np.array([(bits >> i) & 1 == 1 for i in range(num_canaries)], dtype=bool)
            self._direction_seed = int.from_bytes(os.urandom(16), "big")
        else:
            included = (
                np.random.default_rng([seed, 0]).integers(0, 2, size=num_canaries).astype(bool)
            )
            self._direction_seed = int(np.random.default_rng([seed, 1]).integers(0, 2**63))
        self._included = included
        self._included.setflags(write=False)
        self._observed: FloatArray | None = None
        self._observations = 0

    # ---------------------------------------------------------------- identity
    @property
    def canary_ids(self) -> tuple[str, ...]:
        """The ids of every canary, included or not (what the server may see)."""
        return self._ids

    @property
    def included(self) -> npt.NDArray[np.bool_]:
        """Secret membership, one flag per canary (read-only). Reveal only to the auditor."""
        return self._included

    @property
    def included_ids(self) -> tuple[str, ...]:
        """The ids of the canaries whose updates take part (the secret membership)."""
        return tuple(cid for cid, inc in zip(self._ids, self._included) if inc)

    @property
    def dimension(self) -> int:
        """Length of every canary update."""
        return self._d

    @property
    def norm(self) -> float:
        """L2 norm of every canary update."""
        return self._norm

    def __len__(self) -> int:
        return self._m

    # ---------------------------------------------------------------- updates
    def _direction(self, index: int) -> FloatArray:
        rng = np.random.default_rng([self._direction_seed, index])
        v = rng.standard_normal(self._d)
        return np.asarray(v * (self._norm / float(np.linalg.norm(v))), dtype=np.float64)

    def update(self, canary_id: str) -> FloatArray:
        """The (flat) update canary ``canary_id`` sends when it takes part."""
        index = self._index.get(canary_id)
        if index is None:
            raise InvalidParameterError(f"unknown canary id {canary_id!r}")
        return self._direction(index)

    def round_updates(
        self, *, sampling_rate: float = 1.0, rng: np.random.Generator | None = None
    ) -> dict[str, FloatArray]:
        """Updates of the included canaries taking part in this round.

        Each included canary is sampled independently with ``sampling_rate`` (use the rate
        at which real clients are sampled, so that the audit matches the accounting);
        excluded canaries never take part.
        """
        sampling_rate = require_real("sampling_rate", sampling_rate, lo=0.0, hi=1.0, lo_open=True)
        chosen = np.flatnonzero(self._included)
        if sampling_rate < 1.0:
            gen = (
                rng
                if rng is not None
                else np.random.default_rng(int.from_bytes(os.urandom(16), "big"))
            )
            chosen = chosen[gen.random(chosen.size) < sampling_rate]
        return {self._ids[i]: self._direction(int(i)) for i in chosen}

    def inject(
        self,
        updates: Mapping[K, npt.ArrayLike],
        *,
        sampling_rate: float = 1.0,
        rng: np.random.Generator | None = None,
    ) -> dict[K | str, npt.ArrayLike]:
        """``updates`` plus this round's canary updates (see :meth:`round_updates`).

        Raises:
            InvalidParameterError: a real client id collides with a canary id, or an
                update has the wrong length.
        """
        merged: dict[K | str, npt.ArrayLike] = {}
        for cid, upd in updates.items():
            if isinstance(cid, str) and cid in self._index:
                raise InvalidParameterError(f"client id {cid!r} collides with a canary id")
            if np.size(upd) != self._d:
                raise InvalidParameterError(
                    f"update of client {cid!r} has {np.size(upd)} values, expected {self._d}"
                )
            merged[cid] = upd
        merged.update(self.round_updates(sampling_rate=sampling_rate, rng=rng))
        return merged

    # ---------------------------------------------------------------- scoring
    def observe(self, released: npt.ArrayLike) -> None:
        """Add one round's released aggregate (what the server learns) to the running sum."""
        vec = self._flat(released)
        self._observed = vec.copy() if self._observed is None else self._observed + vec
        self._observations += 1

    @property
    def observations(self) -> int:
        """How many released aggregates have been observed."""
        return self._observations

    def _flat(self, released: npt.ArrayLike) -> FloatArray:
        vec = np.asarray(released, dtype=np.float64).reshape(-1)
        if vec.size != self._d:
            raise InvalidParameterError(f"expected {self._d} values, got {vec.size}")
        if not np.all(np.isfinite(vec)):
            raise InvalidParameterError("released values must be finite")
        return vec

    def scores(self, released: npt.ArrayLike | None = None) -> FloatArray:
        """Cosine between the released vector and each canary's direction.

        Args:
            released: e.g. the final model minus the initial model, flattened; by default
                the sum of the aggregates passed to :meth:`observe`.
        """
        if released is None:
            if self._observed is None:
                raise InvalidParameterError("nothing observed: call observe() or pass released")
            vec = self._observed
        else:
            vec = self._flat(released)
        norm = float(np.linalg.norm(vec))
        out = np.empty(self._m, dtype=np.float64)
        for i in range(self._m):
            out[i] = 0.0 if norm == 0.0 else float(self._direction(i) @ vec) / (self._norm * norm)
        return out

    def audit(
        self,
        *,
        delta: float,
        significance: float = 0.05,
        num_positive_guesses: int | None = None,
        num_negative_guesses: int | None = None,
        guess_counts: Sequence[tuple[int, int]] | None = None,
        released: npt.ArrayLike | None = None,
    ) -> OneRunAuditResult:
        """One-run epsilon lower bound from the canary scores (:func:`dp.audit.one_run_audit`).

        With no guess counts, the best of :func:`dp.audit.abstention_grid` (or of
        ``guess_counts``), Bonferroni-corrected; with ``num_positive_guesses`` /
        ``num_negative_guesses``, that choice, fixed in advance.
        """
        return one_run_audit(
            self.scores(released),
            self._included,
            num_positive_guesses=num_positive_guesses,
            num_negative_guesses=num_negative_guesses,
            guess_counts=guess_counts,
            delta=delta,
            significance=significance,
        )
