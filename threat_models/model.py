"""The adversary as data: who may misbehave, how, and what the protocols then guarantee.

A :class:`ThreatModel` is a frozen description of the environment a secure aggregation
round runs in. Protocol parameters (neighbourhood size ``k``, Shamir threshold ``t``) are
*derived* from it by :mod:`threat_models.parameters`, or refused with
:class:`~secagg.errors.InfeasibleThreatModelError`; nobody picks ``k`` and ``t`` by hand.

The fields mirror the production requirements of federated-compute
(``SecureAggregationRequirements``): adversary class, adversarial client rate, estimated
dropout rate and the minimum number of clients in any aggregate the server may see.

Server classes (:class:`ServerClass`), from weakest to strongest:

``CURIOUS`` (honest-but-curious)
    Follows the protocol exactly, relays every message faithfully and reports dropouts
    truthfully, but records everything it sees and may pool it with the colluding
    clients. *Guarantee*: the joint view of the server and the colluders reveals nothing
    about the honest clients' inputs beyond the sum of the survivors' inputs (Bonawitz et
    al. 2017, Thm. 6.2; Bell et al. 2020 for the sparse graph, with statistical error
    ``2^-security_bits``). Needed: ``t`` larger than the number of colluding
    neighbours of any client.

``SEMI_MALICIOUS``
    Additionally lies about dropouts: it may declare a live client dropped, tell
    different clients different stories about who survived, and drop honest clients
    adaptively, to collect both the self-mask share and the masking-key share of one
    victim. It does not forge or replace public keys (keys reach the clients authentically,
    e.g. over a pinned channel). *Guarantee*: as for ``CURIOUS``, because each honest
    client reveals for any peer at most one of the two shares, and
    ``2 t > k + colluding neighbours`` (Bell et al. 2020, Sec. 4) makes it impossible to
    gather ``t`` shares of both kinds for the same victim.

``MALICIOUS``
    Deviates arbitrarily: substitutes public keys, replays or reorders messages across
    stages and rounds, shows different survivor sets or different global models to
    different clients. *Guarantee*: as above, provided the clients' long-term identity
    keys come from a PKI the server does not control. The protocol then signs the
    round-bound keys and the survivor set (consistency check) and a client unmasks only
    after ``t`` valid signatures on the set it was shown (Bonawitz et al. 2017,
    Sec. 6.3). The server still chooses the communication graph in SecAgg+; the
    guarantee assumes it is chosen as specified (uniformly random ring order).

What no class of secure aggregation prevents: a server that controls all clients but one
(Sybils) learns the remaining client's input from the sum; a server that sends a
crafted model learns what that model's update encodes. Those are covered by the minimum
aggregate size (partially) and by differential privacy, not by masking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from secagg.errors import InvalidParameterError

__all__ = ["ServerClass", "ThreatModel", "DEFAULT_SECURITY_BITS", "DEFAULT_CORRECTNESS_BITS"]

DEFAULT_SECURITY_BITS = 40
DEFAULT_CORRECTNESS_BITS = 20
# keeps ceil(fraction * n) from rounding up float noise, e.g. 0.1 * 30 = 3.0000000000000004
_EPSILON = 1e-9


class ServerClass(str, Enum):
    """How far the aggregation server may deviate from the protocol (see module docstring)."""

    CURIOUS = "curious"
    SEMI_MALICIOUS = "semi_malicious"
    MALICIOUS = "malicious"

    @property
    def lies_about_dropouts(self) -> bool:
        """Whether the server may report inconsistent dropouts (needs the higher threshold)."""
        return self is not ServerClass.CURIOUS

    @property
    def needs_authentication(self) -> bool:
        """Whether keys and survivor sets must be signed with identity keys (a PKI)."""
        return self is ServerClass.MALICIOUS


@dataclass(frozen=True, slots=True)
class ThreatModel:
    """What the adversary may do and what the deployment must tolerate.

    Attributes:
        server: the server's class (:class:`ServerClass`). Default ``MALICIOUS``: secure
            by default, at the cost of one extra round and signatures.
        colluding_fraction: ``gamma``, the largest fraction of the cohort that may be
            controlled by (or collude with) the server, in ``[0, 1)``. With ``n`` clients
            the protocol defends against ``C = ceil(gamma * n)`` colluders (rounded up:
            any positive fraction means at least one).
        dropout_fraction: ``delta``, the largest fraction of the cohort expected to drop
            out during a round, in ``[0, 1)``; ``D = ceil(delta * n)`` dropouts must be
            survived with probability at least ``1 - 2^-correctness_bits``.
        min_aggregate_size: the fewest clients whose inputs may appear in any aggregate
            the server can see. ``None`` (default) means ``C + 2``: every visible
            aggregate contains at least two honest clients. A smaller explicit value
            than ``C + 2`` is refused by parameter selection.
        security_bits: ``sigma``; the probability that the graph or threshold fails to
            protect some honest client is at most ``2^-sigma`` (default 40).
        correctness_bits: ``rho``; the probability that ``D`` random dropouts make the
            round fail is at most ``2^-rho`` (default 20).

    Raises:
        InvalidParameterError: a field outside its domain.
    """

    server: ServerClass = ServerClass.MALICIOUS
    colluding_fraction: float = 0.05
    dropout_fraction: float = 0.1
    min_aggregate_size: int | None = None
    security_bits: int = DEFAULT_SECURITY_BITS
    correctness_bits: int = DEFAULT_CORRECTNESS_BITS

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "server", ServerClass(self.server))
        except ValueError:
            raise InvalidParameterError(
                f"server must be one of {[c.value for c in ServerClass]}, got {self.server!r}"
            ) from None
        for name in ("colluding_fraction", "dropout_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidParameterError(f"{name} must be a float in [0, 1), got {value!r}")
            if not (math.isfinite(value) and 0.0 <= value < 1.0):
                raise InvalidParameterError(f"{name} must lie in [0, 1), got {value!r}")
            object.__setattr__(self, name, float(value))
        size = self.min_aggregate_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 2):
            raise InvalidParameterError(
                f"min_aggregate_size must be None or an int >= 2, got {size!r}"
            )
        for name in ("security_bits", "correctness_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 128:
                raise InvalidParameterError(f"{name} must be an int in [1, 128], got {value!r}")

    def max_colluders(self, n: int) -> int:
        """``C = ceil(gamma * n)``: colluding clients to defend against in a cohort of ``n``."""
        _check_cohort(n)
        return max(0, math.ceil(self.colluding_fraction * n - _EPSILON))

    def max_dropouts(self, n: int) -> int:
        """``D = ceil(delta * n)``: dropouts to survive in a cohort of ``n``."""
        _check_cohort(n)
        return max(0, math.ceil(self.dropout_fraction * n - _EPSILON))

    def effective_min_aggregate_size(self, n: int) -> int:
        """The minimum aggregate size for ``n`` clients (``C + 2`` unless set explicitly)."""
        if self.min_aggregate_size is None:
            return self.max_colluders(n) + 2
        _check_cohort(n)
        return self.min_aggregate_size


def _check_cohort(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidParameterError(f"the cohort size must be a positive int, got {n!r}")
