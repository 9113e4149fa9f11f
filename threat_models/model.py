"""The adversary as data: who may misbehave, how, and what the protocols then guarantee.

A :class:`ThreatModel` is a frozen description of the environment a secure aggregation
round runs in. Protocol parameters (neighbourhood size ``k``, Shamir threshold ``t``) are
*derived* from it by :mod:`threat_models.parameters`, or refused with
:class:`~secagg.errors.InfeasibleThreatModelError`; nobody picks ``k`` and ``t`` by hand.

The fields mirror the production requirements of federated-compute
(``SecureAggregationRequirements``): adversary class, adversarial client rate, estimated
dropout rate and the minimum number of clients in any aggregate the server may see.

Server classes (:class:`ServerClass`), from weakest to strongest adversary. In every class
the server controls the transport: which message reaches which client and when, the round
id, the cohort, the model each client trains on, and it may replay anything it saw in an
earlier execution; it may collude with up to ``C = ceil(gamma n)`` clients.

``CURIOUS`` (honest-but-curious)
    Follows the protocol exactly, relays every message faithfully, draws the SecAgg+ graph
    honestly and reports dropouts truthfully, but records everything it sees and may pool it
    with the colluding clients. *Guarantee*: the joint view of the server and the colluders
    reveals nothing about the honest clients' inputs beyond the sum of the survivors' inputs
    (Bonawitz et al. 2017, Thm. 6.2; Bell et al. 2020 for the sparse graph, with statistical
    error ``2^-security_bits``). *Needs*: ``t`` larger than the number of colluding
    neighbours of any client. No PKI. A server that lies is outside this class: against it
    the curious protocol gives no guarantee (a lying server can read one client's input).

``SEMI_MALICIOUS``
    Additionally lies: declares live clients dropped, tells different clients different
    stories about who survived, forwards to a client only some peers' shares, chooses the
    graph if it can, reuses round ids. It does not forge or replace the keys clients
    advertise, nor the per-round signing keys it relays (they reach the peers
    authentically, e.g. over pinned channels). *Guarantee*:
    as for ``CURIOUS``, for every such strategy: the server learns only sums of at least
    ``min_aggregate_size`` inputs, never one client's. *Needs*: no PKI. Each client advertises
    a fresh per-round Ed25519 key with its keys and signs with it.

``MALICIOUS``
    Deviates arbitrarily: everything above, plus substituting public keys, forging messages
    and showing different global models to different clients. *Guarantee*: as above,
    provided the clients' long-term identity keys come from a PKI the server does not
    control. Clients sign their advertised keys (bound to the round, the cohort, the model
    and their graph-seed commitment) and every later statement with their identity keys, and
    remember the rounds they took part in (:class:`~protocols.round_log.RoundLog`, kept where
    the identity key is kept).

Why the two lying classes are safe (the argument the parameters rest on):

1. *Unbiasable graph.* Every client commits to 32 random bytes with its keys; only after
   the server has fixed the list of commitments (and shown it to every client) do the
   clients reveal them. The execution context -- a hash of the round id, the cohort and all
   commitments and reveals -- seeds the SecAgg+ ring, and every client derives its own
   neighbourhood and refuses any other. A colluding client that reveals last cannot steer
   it (it committed first); a server that drops a committed client before the reveal gets
   no seed at all: the round restarts without that client, with a fresh round id. So each
   execution's graph is a uniform draw; a server that aborts and restarts gets one fresh
   draw per execution, each failing with probability at most ``2^-security_bits`` (the
   bounds of :mod:`threat_models.parameters` are per execution).
2. *One survivor set.* Before revealing anything a client needs valid signatures, bound to
   the execution context, on the exact survivor set it was shown, from
   ``Q = max(min_aggregate_size, floor((n + C) / 2) + 1)`` distinct survivors. Honest
   clients sign one set per execution; two different sets would need ``2 (Q - C) > n - C``
   honest signers. So every client that reveals anything saw the same set ``S`` -- telling
   different clients different stories about who dropped gains nothing -- and ``S`` holds at
   least ``min_aggregate_size`` clients that signed it, so padding it with ids that never
   contributed gains nothing either.
3. *Masks with every survivor.* With its masked input a client signs its masking set (the
   peers whose shares it received). A holder reveals the self-mask share of a surviving peer
   only if that signed set contains every surviving neighbour of the peer. A server that
   forwarded a victim only a few peers' shares must therefore declare exactly those dropped
   -- for every holder, by point 2 -- and then the victim's own input never appears alone.
4. *One share per peer.* For each peer an honest client reveals the share of its self-mask
   seed (peer in ``S``) or of its masking key (peer not in ``S``), never both; the colluders
   hold fewer than ``t`` shares of any honest client's secrets. With one ``S`` for everyone
   the server obtains, for each client, only the secret the protocol means it to have, and
   learns the sum over ``S`` (SecAgg: the honest part of ``S`` is one block; SecAgg+: the
   honest survivors stay connected, point 1 and the connectivity bound with at most ``D``
   declared dropouts, which clients check). The threshold ``2 t > k + t1`` is kept as a
   second, independent line: even a server that could show two survivor sets could not
   gather ``t`` shares of both kinds of one victim from its honest neighbours.
5. *Freshness.* Every signature after the keys is bound to the execution context, fresh in
   each execution (each client checks that its own reveal is in it); signed keys are bound
   to the round id, the cohort and the commitment, and an identity refuses a second
   execution of a round id. Nothing signed in one execution verifies in another.

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
from secagg.validation import is_int, is_real, require_int

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
        """Whether the server may lie (graph seed, consistency check, higher threshold)."""
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
            if not is_real(value):
                raise InvalidParameterError(f"{name} must be a float in [0, 1), got {value!r}")
            if not (math.isfinite(value) and 0.0 <= value < 1.0):
                raise InvalidParameterError(f"{name} must lie in [0, 1), got {value!r}")
            object.__setattr__(self, name, float(value))
        size = self.min_aggregate_size
        if size is not None and (not is_int(size) or size < 2):
            raise InvalidParameterError(
                f"min_aggregate_size must be None or an int >= 2, got {size!r}"
            )
        for name in ("security_bits", "correctness_bits"):
            value = getattr(self, name)
            if not is_int(value) or not 1 <= value <= 128:
                raise InvalidParameterError(f"{name} must be an int in [1, 128], got {value!r}")

    def max_colluders(self, n: int) -> int:
        """``C = ceil(gamma * n)``: colluding clients to defend against in a cohort of ``n``."""
        require_int("the cohort size", n, lo=1)
        return max(0, math.ceil(self.colluding_fraction * n - _EPSILON))

    def max_dropouts(self, n: int) -> int:
        """``D = ceil(delta * n)``: dropouts to survive in a cohort of ``n``."""
        require_int("the cohort size", n, lo=1)
        return max(0, math.ceil(self.dropout_fraction * n - _EPSILON))

    def effective_min_aggregate_size(self, n: int) -> int:
        """The minimum aggregate size for ``n`` clients (``C + 2`` unless set explicitly)."""
        if self.min_aggregate_size is None:
            return self.max_colluders(n) + 2
        require_int("the cohort size", n, lo=1)
        return self.min_aggregate_size
