"""Central DP: Gaussian noise added to the aggregate by a party trusted to see the exact sum.

Deployment assumption -- read this first. In the *central* model the party that adds the
noise (the server, or a trusted aggregator) sees the exact, un-noised sum of the clipped
client updates; only what it *releases* (the noised sum, the trained model) is
differentially private. This is what Flower's server-side DP wrappers do after secure
aggregation unmasks the sum. If the server is not trusted with the exact sum, use the
distributed mechanisms of :mod:`dp.distributed` instead: there every client adds its
share of integer noise before masking, so no one ever sees an un-noised sum.

Mechanism: with every client update clipped to L2 norm ``C`` (:mod:`dp.clipping`), the
sum has L2 sensitivity ``C`` under adding or removing one client. Releasing

    sum_i clip(u_i) + N(0, (z C)^2 I_d)

is the Gaussian mechanism with noise multiplier ``z``, described by
``dp_accounting.GaussianDpEvent(z)`` (McMahan et al., ICLR 2018, DP-FedAvg). Client
sampling (Poisson with rate ``q``) is recorded by the ledger around this event. For a
mean, divide the *noised sum* by a public denominator (the expected number of clients),
never by the actual count.

Noise: continuous Gaussian from the AES-CTR PRG (:func:`dp.samplers.sample_gaussian`).
As with every floating-point Gaussian, the low-order bits of ``x + noise`` are not
exactly those of a Gaussian shift (Mironov, CCS 2012); the discrete mechanisms avoid this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import dp_accounting
import numpy as np
import numpy.typing as npt

from dp.clipping import flatten_update
from dp.samplers import sample_gaussian
from secagg.errors import EncodingError, InvalidParameterError
from secagg.validation import require_real

__all__ = ["CentralGaussianMechanism", "NoisedAggregate"]

F64 = npt.NDArray[np.float64]
U = TypeVar("U")


@dataclass(frozen=True)
class NoisedAggregate(Generic[U]):
    """A released aggregate and the mechanism that produced it.

    Attributes:
        value: the noised aggregate, in the structure it was given.
        event: ``GaussianDpEvent(noise_multiplier)``, or ``NonPrivateDpEvent`` for ``z = 0``.
        noise_stddev: per-coordinate standard deviation of the added noise, ``z C``.
    """

    value: U
    event: dp_accounting.DpEvent
    noise_stddev: float


@dataclass(frozen=True)
class CentralGaussianMechanism:
    """Gaussian noise on a sum of clipped updates, added by a trusted party.

    Args:
        noise_multiplier: ``z >= 0``: noise standard deviation over the L2 sensitivity.
            ``z = 0`` releases the exact sum (recorded as ``NonPrivateDpEvent``).
        clip_norm: ``C > 0``, the L2 norm every client update was clipped to (the
            sensitivity of the sum).

    Raises:
        InvalidParameterError: on a negative, non-finite or otherwise invalid value.
    """

    noise_multiplier: float
    clip_norm: float

    def __post_init__(self) -> None:
        for name in ("noise_multiplier", "clip_norm"):
            require_real(name, getattr(self, name), lo=0.0)
        if float(self.clip_norm) == 0:
            raise InvalidParameterError("clip_norm must be positive")

    @property
    def noise_stddev(self) -> float:
        """Per-coordinate noise standard deviation ``z C``."""
        return float(self.noise_multiplier) * float(self.clip_norm)

    @property
    def event(self) -> dp_accounting.DpEvent:
        """The DP event of one release."""
        if self.noise_multiplier == 0:
            return dp_accounting.NonPrivateDpEvent()
        return dp_accounting.GaussianDpEvent(noise_multiplier=float(self.noise_multiplier))

    def add_noise(self, aggregate: U, *, seed: bytes | None = None) -> NoisedAggregate[U]:
        """Release ``aggregate + N(0, (z C)^2 I)``.

        Args:
            aggregate: the exact sum of clipped updates: a numpy array (any shape), or a
                mapping / sequence of arrays or tensors (noised leaf by leaf, same structure).
            seed: PRG key for reproducible tests only.

        Returns:
            A :class:`NoisedAggregate`; the input is not modified.

        Raises:
            EncodingError: non-finite or non-floating input.
        """
        if isinstance(aggregate, np.ndarray):
            x = np.asarray(aggregate, dtype=np.float64)
            if not np.all(np.isfinite(x)):
                raise EncodingError("aggregate contains NaN or infinity")
            noised: Any = x + sample_gaussian(self.noise_stddev, x.shape, seed=seed)
        else:
            vector, layout = flatten_update(aggregate)
            noise = sample_gaussian(self.noise_stddev, vector.shape, seed=seed)
            noised = layout.unflatten(vector + noise)
        return NoisedAggregate(value=noised, event=self.event, noise_stddev=self.noise_stddev)
