"""Threat model of Paillier aggregation with threshold decryption, and its parameters.

Parties:

* **Dealer** (trusted). Generates the modulus from two safe primes, Shamir-shares the
  decryption exponent over the integers among ``l`` decryptors, publishes the public key
  (modulus, fixed encryption base, verification keys) and erases the factorisation
  (:func:`secagg.threshold_paillier.deal_threshold_key`). Whoever knows the factorisation
  can decrypt every ciphertext: the dealer must not collude with the server, and must
  really erase it. In practice the dealer is a one-off ceremony run by a party the clients
  trust (or inside an enclave); distributed key generation (no dealer) is not implemented.
  The public key must reach the clients authenticated (pinned, or signed by the dealer):
  a server that substitutes its own key, or a fixed base of small order, reads every update.
* **Clients** encrypt their packed, quantised update under the public key, prove that they
  know what they encrypted (a batched proof of plaintext knowledge bound to the round and to
  their id) and sign ``(round, client id, key, digest of the ciphertexts)`` with their
  long-term identity key (Ed25519, from a PKI the server does not control).
* **Server** (aggregator). Multiplies the ciphertexts; never holds any key share.
* **Decryptors** (a committee of ``l``, or the clients themselves). Each holds one key share.

What a decryptor checks before it releases a partial decryption (the defence against
"server asks decryptors to decrypt one client's ciphertext"):

1. the request is for the current round and the decryptor has not yet decrypted anything in
   this round (one decryption per decryptor per round);
2. it lists at least ``min_aggregate_size`` (and at most the packing capacity) contributions
   from *distinct* clients of the round's roster, each with a valid signature over
   ``(round, client id, key id, ciphertext digest)`` and a valid proof of plaintext knowledge
   bound to ``(round, client id)``;
3. the decryptor recomputes the product of those ciphertexts itself and decrypts that
   product (never a ciphertext chosen by the server).

Check 2 stops a lone ciphertext and fabricated padding (the server cannot sign for clients),
and *cancellation*: Paillier ciphertexts are malleable, so without the proofs a single
client colluding with the server could upload ``prod_(h != v) c_h^(-1)`` (computed from the
honest uploads the server shows it) and the aggregate, of any size, would decrypt to the
victim ``v``'s update alone; the colluder cannot open that combination, so it has no proof,
and a copied proof is bound to another sender. Check 1 stops differencing: decrypting ``A`` and ``A`` minus one client in the same round
would reveal that client. Different quorums could still be asked for different aggregates:
two quorums of size ``t`` among ``l`` decryptors share at least ``2t - l`` members, so if
``2t - l > c`` (``c`` colluding decryptors), some honest decryptor would have to decrypt
twice, which it refuses.

What collusion breaks it:

* the dealer with the server: everything;
* ``t`` decryptors with the server: any ciphertext (the threshold is the key);
* ``2t - l <= c``: two disjoint-enough quorums, hence one client's update by differencing
  (excluded by the parameters below for servers that may deviate);
* ``min_aggregate_size - 1`` colluding (Sybil) clients with the server: the one honest
  contribution in an aggregate of minimum size (colluders who *follow* the protocol; the
  proofs stop colluders who cancel honest contributions). Hence ``min_aggregate_size >= C + 2``
  (the same rule as the masking protocols);
* across rounds the server may aggregate different cohorts (all clients, then all but one):
  a per-round protocol cannot prevent this; differential privacy must bound what it learns.

Server classes (:class:`~threat_models.model.ServerClass`) map to the variant:

* ``CURIOUS``: follows the protocol (so do its colluding clients); ``t > c`` suffices;
  signatures and proofs are not needed.
* ``SEMI_MALICIOUS``: may lie about who contributed or dropped out, and its colluding
  clients may upload anything: contributions must be signed and carry proofs of plaintext
  knowledge, and ``2t > l + c``.
* ``MALICIOUS``: additionally arbitrary messages and colluding decryptors that may return
  wrong partial decryptions: as semi-malicious, plus zero-knowledge proofs of correct
  partial decryption, verified before combining (robustness: bad partials are discarded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from secagg.errors import InfeasibleThreatModelError, InvalidParameterError
from threat_models.model import ServerClass, ThreatModel

__all__ = ["PaillierParameters", "paillier_parameters", "minimum_decryption_threshold"]


@dataclass(frozen=True, slots=True)
class PaillierParameters:
    """Parameters of a Paillier aggregation round derived from a :class:`ThreatModel`.

    Attributes:
        n_clients: cohort size.
        n_decryptors: ``l``, key shares dealt.
        threshold: ``t``, partial decryptions needed.
        colluding_decryptors: ``c``, decryptors that may collude with the server.
        dropped_decryptors: decryptors that may be missing at decryption time.
        min_aggregate_size: fewest signed contributions a decryptor accepts.
        max_clients: packing capacity (the most contributions an aggregate may hold).
        signed_contributions: decryptors require client signatures on contributions.
        plaintext_proofs: contributions carry proofs of plaintext knowledge bound to round and
            sender, checked by server and decryptors.
        decryption_proofs: partial decryptions carry proofs, verified before combining.
    """

    n_clients: int
    n_decryptors: int
    threshold: int
    colluding_decryptors: int
    dropped_decryptors: int
    min_aggregate_size: int
    max_clients: int
    signed_contributions: bool
    plaintext_proofs: bool
    decryption_proofs: bool


def _fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameterError(f"{name} must be a float in [0, 1), got {value!r}")
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise InvalidParameterError(f"{name} must lie in [0, 1), got {value!r}")
    return float(value)


def minimum_decryption_threshold(server: ServerClass, n_decryptors: int, colluding: int) -> int:
    """Smallest safe ``t``: ``t > c``, and ``2t - l > c`` when the server may deviate.

    Args:
        server: the server class.
        n_decryptors: ``l``.
        colluding: ``c``, colluding decryptors.
    """
    if isinstance(colluding, bool) or not isinstance(colluding, int) or colluding < 0:
        raise InvalidParameterError(f"colluding must be a non-negative int, got {colluding!r}")
    t = max(2, colluding + 1)
    if server is not ServerClass.CURIOUS:
        t = max(t, (n_decryptors + colluding) // 2 + 1)
    return t


def paillier_parameters(
    n_clients: int,
    threat_model: ThreatModel,
    *,
    n_decryptors: int | None = None,
    decryptor_colluding_fraction: float | None = None,
    decryptor_dropout_fraction: float | None = None,
    max_clients: int | None = None,
) -> PaillierParameters:
    """Derive the decryption threshold and the decryptors' checks from a threat model.

    Args:
        n_clients: clients in the round (at least 2).
        threat_model: adversary description; its colluding and dropout fractions apply to the
            clients and, unless overridden, to the decryptors.
        n_decryptors: committee size ``l``; ``None`` means the clients are the decryptors.
        decryptor_colluding_fraction: fraction of decryptors that may collude with the server.
        decryptor_dropout_fraction: fraction of decryptors that may be missing.
        max_clients: packing capacity; default ``n_clients``.

    Returns:
        ``t = minimum_decryption_threshold(...)``, the most dropout-tolerant safe threshold.

    Raises:
        InfeasibleThreatModelError: no threshold satisfies both ``t >= t_min`` and
            ``t <= l - dropped``, or the minimum aggregate cannot be met; the message names the
            failing bound.
        InvalidParameterError: malformed arguments.
    """
    if not isinstance(threat_model, ThreatModel):
        raise InvalidParameterError("threat_model must be a ThreatModel")
    if isinstance(n_clients, bool) or not isinstance(n_clients, int) or n_clients < 2:
        raise InvalidParameterError(f"n_clients must be an int >= 2, got {n_clients!r}")
    committee = n_clients if n_decryptors is None else n_decryptors
    if isinstance(committee, bool) or not isinstance(committee, int) or committee < 2:
        raise InvalidParameterError(f"n_decryptors must be an int >= 2, got {committee!r}")
    capacity = n_clients if max_clients is None else max_clients
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < n_clients:
        raise InvalidParameterError(
            f"max_clients must be an int >= n_clients = {n_clients}, got {capacity!r}"
        )
    gamma = _fraction(
        "decryptor_colluding_fraction",
        threat_model.colluding_fraction
        if decryptor_colluding_fraction is None
        else decryptor_colluding_fraction,
    )
    delta = _fraction(
        "decryptor_dropout_fraction",
        threat_model.dropout_fraction
        if decryptor_dropout_fraction is None
        else decryptor_dropout_fraction,
    )
    # one definition of how many parties may collude or drop out: ThreatModel's (rounded up)
    decryptor_model = replace(threat_model, colluding_fraction=gamma, dropout_fraction=delta)
    colluding = decryptor_model.max_colluders(committee)
    dropped = decryptor_model.max_dropouts(committee)
    threshold = minimum_decryption_threshold(threat_model.server, committee, colluding)
    if threshold > committee - dropped:
        rule = "t > c" if threat_model.server is ServerClass.CURIOUS else "t > c and 2t > l + c"
        raise InfeasibleThreatModelError(
            f"decryption threshold {threshold} ({rule} with l = {committee}, c = {colluding}) "
            f"exceeds the {committee - dropped} decryptors left after {dropped} dropouts"
        )
    client_colluders = threat_model.max_colluders(n_clients)
    size = threat_model.effective_min_aggregate_size(n_clients)
    if size < client_colluders + 2:
        raise InfeasibleThreatModelError(
            f"min_aggregate_size {size} must be at least colluders + 2 = {client_colluders + 2}: "
            "a smaller aggregate may hold a single honest client"
        )
    survivors = n_clients - threat_model.max_dropouts(n_clients)
    if survivors < size:
        raise InfeasibleThreatModelError(
            f"only {survivors} of {n_clients} clients are expected to upload, fewer than "
            f"min_aggregate_size {size}"
        )
    server = threat_model.server
    return PaillierParameters(
        n_clients=n_clients,
        n_decryptors=committee,
        threshold=threshold,
        colluding_decryptors=colluding,
        dropped_decryptors=dropped,
        min_aggregate_size=size,
        max_clients=capacity,
        signed_contributions=server is not ServerClass.CURIOUS,
        plaintext_proofs=server is not ServerClass.CURIOUS,
        decryption_proofs=server is not ServerClass.CURIOUS,
    )
