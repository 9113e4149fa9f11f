"""The outcome of one simulated round, shared by every protocol family."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from secagg.errors import InvalidParameterError
from threat_models.paillier import PaillierParameters
from threat_models.parameters import ProtocolParameters

__all__ = ["SimulationResult"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """Outcome of one simulated round (shared by every protocol, Paillier included).

    Attributes:
        aggregate: the decoded sum of the survivors' inputs (float64, the input length);
            with weights, the sum of ``w_u * x_u``.
        survivors: sorted ids whose inputs are in the sum (the caller's ids).
        server_view: every message the server accepted, in arrival order (the family's
            message classes: :class:`~protocols.masking.messages.Message` or the Paillier
            messages).
        protocol: the protocol's name (a :class:`~protocols.options.ProtocolName` value).
        dropped: sorted ids whose inputs are not in the sum.
        weight_sum: with weights, the decoded sum of the survivors' weights (the only
            thing the server learns about the weights); otherwise ``None``.
        parameters: the protocol parameters used
            (:class:`~threat_models.parameters.ProtocolParameters` for the masking protocols,
            :class:`~threat_models.paillier.PaillierParameters` for Paillier).
        details: protocol-specific extras (degree, threshold, round id, ...).
    """

    aggregate: F64 = field(repr=False)
    survivors: tuple[int | str, ...]
    server_view: tuple[object, ...] = field(repr=False)
    protocol: str = ""
    dropped: tuple[int | str, ...] = ()
    weight_sum: float | None = None
    parameters: ProtocolParameters | PaillierParameters | None = None
    details: Mapping[str, object] = field(default_factory=dict)

    @property
    def mean(self) -> F64:
        """``aggregate / weight_sum`` with weights, else ``aggregate / len(survivors)``."""
        denominator = self.weight_sum if self.weight_sum is not None else float(len(self.survivors))
        if not denominator:
            raise InvalidParameterError("the mean of an empty aggregate is undefined")
        return np.asarray(self.aggregate, dtype=np.float64) / denominator
