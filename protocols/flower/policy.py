"""What a Flower app's secure aggregation runs: one policy, held by the server and every client.

:class:`SecAggPolicy` fixes the protocol, the threat model, the differential privacy and
the encoding. The server workflow derives every round's parameters from it; each client
derives the same parameters from its *own* copy and refuses a round whose announced
parameters differ (a different policy digest, a ring or vector length that does not
follow from the policy, a threshold below what its threat model needs). The server can
therefore not weaken the protocol or the noise by announcing other numbers.

Where the client's copy comes from matters: in Flower the ClientApp code is shipped by
the SuperLink. Against a malicious server, verify the app (Flower's FAB signing,
``flower-supernode --trusted-entities``) or build the policy from the SuperNode's own
configuration, so that the policy the clients enforce is the one you audited.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from enum import Enum

from protocols.inputs import weight_encoder
from secagg.errors import InvalidParameterError
from secagg.primitives.encoding import FixedPointEncoder, VectorEncoder
from secagg.recipe.options import AggregationProtocol, DPMode
from secagg.recipe.planning import (
    distributed_encoder,
    distributed_ring_bits,
    dp_minimum_threat_model,
    fixed_point_encoder,
)
from secagg.validation import is_int, is_real, require_int, require_positive
from threat_models.model import ThreatModel
from threat_models.parameters import (
    GraphKind,
    ProtocolParameters,
    check_parameters,
    select_parameters,
)

__all__ = ["SecAggPolicy", "UpdateKind", "POLICY_VERSION"]

POLICY_VERSION = 1


class UpdateKind(str, Enum):
    """What the client's train function returns in its ``ArrayRecord``.

    ``MODEL``: the locally trained model; the client sends ``trained - global`` (the
    update is clipped and noised, never the model itself). ``DELTA``: the update itself.
    """

    MODEL = "model"
    DELTA = "delta"


@dataclass(frozen=True)
class SecAggPolicy:
    """The secure aggregation of a Flower app (server and clients hold equal copies).

    Attributes:
        protocol: ``secagg+`` (default) or ``secagg`` (Paillier needs a dealt key and a
            decryption committee; use it through :class:`secagg.recipe.SecureAggregator`).
            :class:`~secagg.recipe.options.AggregationProtocol` is
            :class:`protocols.options.ProtocolName`.
        threat_model: the adversary; default ``ThreatModel()`` (malicious server: clients
            need identity keys and a PKI, see :mod:`protocols.flower.pki`).
        dp: ``distributed`` (default), ``central`` or ``none``. (Local DP-SGD happens in
            the client's train function; choose ``none`` here.)
        noise_multiplier: ``z`` of the user-level mechanism.
        clip_norm: L2 clip of each client update (required with DP; optional without).
        value_bound: without clipping, the largest absolute coordinate accepted.
        weighted: weight the mean by each client's ``num-examples`` metric (no DP only);
            the weight is masked with the update, the server learns only the sum.
        max_weight: the largest weight accepted.
        max_clients: clients refuse rounds announced for a larger cohort.
        update: what the train function returns (:class:`UpdateKind`).

    Raises:
        InvalidParameterError: an invalid or unsupported combination.
    """

    protocol: AggregationProtocol = AggregationProtocol.SECAGG_PLUS
    threat_model: ThreatModel = field(default_factory=ThreatModel)
    dp: DPMode = DPMode.DISTRIBUTED
    noise_multiplier: float = 1.0
    clip_norm: float | None = 1.0
    value_bound: float = 1000.0
    weighted: bool = False
    max_weight: float = 1e6
    max_clients: int = 100_000
    update: UpdateKind = UpdateKind.MODEL

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "protocol", AggregationProtocol(self.protocol))
            object.__setattr__(self, "dp", DPMode(self.dp))
            object.__setattr__(self, "update", UpdateKind(self.update))
        except ValueError as exc:
            raise InvalidParameterError(str(exc)) from None
        if self.protocol is AggregationProtocol.PAILLIER:
            raise InvalidParameterError(
                "the Flower integration runs secagg or secagg+; Paillier runs through "
                "SecureAggregator"
            )
        if self.dp is DPMode.LOCAL:
            raise InvalidParameterError(
                "local DP-SGD happens in the client's train function: use dp='none' here"
            )
        if not isinstance(self.threat_model, ThreatModel):
            raise InvalidParameterError("threat_model must be a ThreatModel")
        for name in ("noise_multiplier", "value_bound", "max_weight"):
            require_positive(name, getattr(self, name))
        clip = self.clip_norm
        if clip is not None and not (is_real(clip) and math.isfinite(clip) and clip > 0):
            raise InvalidParameterError(f"clip_norm must be None or positive, got {clip!r}")
        if self.dp.user_level and self.clip_norm is None:
            raise InvalidParameterError(f"dp={self.dp.value!r} needs a clip_norm (the sensitivity)")
        if self.weighted and self.dp.user_level:
            raise InvalidParameterError("weighted means are not available with user-level DP")
        require_int("max_clients", self.max_clients, lo=3)

    # -- agreement ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        """Every field, JSON-compatible (the threat model field by field)."""
        tm = self.threat_model
        return {
            "version": POLICY_VERSION,
            "protocol": self.protocol.value,
            "threat_model": {
                "server": tm.server.value,
                "colluding_fraction": tm.colluding_fraction,
                "dropout_fraction": tm.dropout_fraction,
                "min_aggregate_size": tm.min_aggregate_size,
                "security_bits": tm.security_bits,
                "correctness_bits": tm.correctness_bits,
            },
            "dp": self.dp.value,
            "noise_multiplier": float(self.noise_multiplier),
            "clip_norm": None if self.clip_norm is None else float(self.clip_norm),
            "value_bound": float(self.value_bound),
            "weighted": self.weighted,
            "max_weight": float(self.max_weight),
            "max_clients": self.max_clients,
            "update": self.update.value,
        }

    def digest(self) -> bytes:
        """SHA-256 of the canonical JSON of :meth:`to_dict` (announced by the server)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).digest()

    @property
    def signed(self) -> bool:
        """Whether rounds are signed (malicious server): clients need identity keys and a PKI."""
        return self.threat_model.server.needs_authentication

    @property
    def graph(self) -> GraphKind:
        """The masking graph: complete for ``secagg``, a Harary graph for ``secagg+``."""
        return (
            GraphKind.COMPLETE if self.protocol is AggregationProtocol.SECAGG else GraphKind.HARARY
        )

    # -- per-round derivations (identical on both sides) ---------------------------------

    def round_threat_model(self, cohort: int) -> ThreatModel:
        """The threat model of a round of ``cohort`` clients (raised minimum aggregate with
        distributed DP)."""
        if self.dp is DPMode.DISTRIBUTED:
            return dp_minimum_threat_model(self.threat_model, cohort)
        return self.threat_model

    def parameters(self, cohort: int) -> ProtocolParameters:
        """Server side: ``k`` and ``t`` for ``cohort`` clients."""
        self._check_cohort(cohort)
        return select_parameters(cohort, self.round_threat_model(cohort), graph=self.graph)

    def check_parameters(self, cohort: int, degree: int, threshold: int) -> ProtocolParameters:
        """Client side: accept the announced ``k`` and ``t`` only if the policy's threat model
        does.

        Raises:
            InvalidParameterError, InfeasibleThreatModelError: the announcement is refused.
        """
        self._check_cohort(cohort)
        expected = self.graph
        params = check_parameters(cohort, degree, threshold, self.round_threat_model(cohort))
        if params.graph is not expected and not (expected is GraphKind.HARARY and params.complete):
            raise InvalidParameterError(
                f"the policy runs a {expected.value} graph, not {params.graph.value}"
            )
        return params

    def _check_cohort(self, cohort: int) -> None:
        if not is_int(cohort) or not 3 <= cohort <= self.max_clients:
            raise InvalidParameterError(
                f"a cohort of {cohort!r} clients is outside [3, {self.max_clients}]"
            )

    def encoder(
        self, cohort: int, dimension: int, rotation_seed: bytes | None = None
    ) -> VectorEncoder:
        """The round's encoder for ``dimension``-long updates (distributed DP: with the seed)."""
        if self.dp is DPMode.DISTRIBUTED:
            if rotation_seed is None or len(rotation_seed) != 32:
                raise InvalidParameterError(
                    "distributed DP needs the round's 32-byte rotation seed"
                )
            return distributed_encoder(
                self.threat_model,
                noise_multiplier=self.noise_multiplier,
                clip_norm=float(self.clip_norm or 1.0),
                bits=distributed_ring_bits(self.protocol),
                cohort=cohort,
                dimension=dimension,
                rotation_seed=rotation_seed,
            )
        bound = self.clip_norm if self.clip_norm is not None else self.value_bound
        return fixed_point_encoder(
            float(bound),
            cohort=cohort,
            clipped=self.clip_norm is not None,
            max_weight=self.max_weight if self.weighted else None,
        )

    def weight_encoder(self, cohort: int, bits: int) -> FixedPointEncoder | None:
        """Encoder of the folded weight (weighted means only), on the update's ring."""
        if not self.weighted:
            return None
        return weight_encoder({}, max_weight=self.max_weight, bits=bits, max_clients=cohort)

    def vector_length(self, encoder: VectorEncoder, dimension: int) -> int:
        """Elements of a masked input: the encoding, plus one for a folded weight."""
        return encoder.encoded_length(dimension) + (1 if self.weighted else 0)
