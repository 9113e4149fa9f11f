"""Threat model of Paillier aggregation with threshold decryption, and its parameters.

Parties:

* **Key generation**, one of two (``key_generation=`` of :func:`protocols.paillier.run_round`,
  of the recipe and of ``secagg demo``):

  - ``"dealer"`` (default; trusted). Generates the modulus from two safe primes,
    Shamir-shares the decryption exponent over the integers among ``l`` decryptors,
    publishes the public key (modulus, fixed encryption base, verification keys) and
    erases the factorisation (:func:`secagg.primitives.threshold_paillier.deal_threshold_key`).
    Whoever knows the factorisation can decrypt every ciphertext: the dealer must not
    collude with the server, and must really erase it. In practice the dealer is a
    one-off ceremony run by a party the clients trust (or inside an enclave).
  - ``"distributed"`` (no dealer): the ``l >= 3`` decryptors generate the key themselves
    (:mod:`protocols.paillier.keygen`, arithmetic in :mod:`secagg.primitives.distributed_paillier`:
    Boneh--Franklin with BGW). Nobody ever holds the factorisation or the exponent,
    *provided that* at most ``floor((l-1)/2)`` members collude (an honest majority, a
    stronger requirement than ``t > c`` for large ``t``) and that every member follows the
    key-generation protocol (semi-honest: a member that deviates during key generation
    can make it fail or corrupt a share; there is no verifiable secret sharing). The
    server only relays (pairwise shares are encrypted and authenticated, broadcasts
    signed, so it can delay or drop messages but not read or forge them); a member that
    vanishes stalls the session, which restarts without it. What the distributed key
    gives up: there is no checked fixed encryption base (encryption uses textbook
    randomness, about 7x slower per ciphertext at 2048 bits), the shares are longer
    (partial decryption about 1.8x slower), and the primes are not safe primes, so a verified
    proof of partial decryption guarantees that the partial does not shift the plaintext
    but not that it is right in its small-order part: a malicious decryptor can make the
    combination fail (an :class:`~secagg.errors.AuthenticationError`, the round aborts),
    never make it return a wrong sum. Robustness against a malicious decryptor therefore
    holds for dealt keys only; privacy and correctness hold for both.

  Either way the public key must reach the clients authenticated (pinned, or signed by
  the dealer or by the committee): a server that substitutes its own key, or a fixed base
  of small order, reads every update.
* **PKI.** Every client and every decryptor has a long-term Ed25519 identity key whose
  public half the others get from a PKI the server does not control.
* **Decryptors** (a committee of ``l``, or the clients themselves). Each holds one key share
  and a *round log* (:class:`protocols.round_log.RoundLog`), persisted where the share and
  the identity key are kept, that records every round it has taken part in.
* **Clients** encrypt their packed, quantised update under the public key, prove that they
  know what they encrypted (a batched proof of plaintext knowledge) and sign the
  ciphertexts' digest; proof and signature are bound to the key, the round and the
  execution context (below). Each client also keeps a round log.
* **Server** (aggregator). Relays, verifies and multiplies; never holds any key share. It
  picks the round ids, decides which message reaches whom, may replay anything it has seen,
  and colludes with ``C`` clients and ``c`` decryptors.

Counting the adversary: one definition throughout, :meth:`ThreatModel.max_colluders`
(``ceil(gamma * n)``, any positive fraction means at least one) and
:meth:`ThreatModel.max_dropouts`. Where the clients are the decryptors, ``c = C``: they are
the same parties. With a separate committee, ``c = ceil(gamma_d * l)`` (``gamma_d`` defaults
to the clients' fraction).

Freshness. A round id is chosen by the server, so it is not fresh: a server that ran round
``r`` once could run ``r`` again with fresh decryptor processes and feed them the first
execution's signed, proven uploads minus a victim's; the two decryptions differ by the
victim's update, and with distributed DP the noise shares cancel in the difference. Two
mechanisms stop this, each on its own:

1. *Round logs.* A decryptor claims ``("paillier-decrypt", round)`` in its log before its
   fresh nonce (below) leaves it, a client claims ``("paillier-upload", round)`` before it
   encrypts, and both refuse a round already claimed (:class:`~secagg.errors.ReplayError`),
   also after a restart when the log is persisted (:meth:`RoundLog.at`).
2. *Execution context.* Each execution starts with every decryptor drawing a fresh 32-byte
   nonce, signed with its identity key over ``(key, round, party, nonce)``. The context is
   ``SHA-256(key, round, the committed (party, nonce) pairs)``; clients check the nonce
   signatures and that at least ``t`` decryptors committed, then sign and prove over the
   context. An honest decryptor accepts only the nonce list that holds *its own* nonce of
   this execution, and only uploads over that context; a replayed upload names an old
   context (or fails its signature if relabelled), and a decryptor whose log was lost
   draws a nonce the old uploads cannot contain. Every quorum holds an honest decryptor
   (``t > c``), so no quorum decrypts anything but this execution's uploads.

What a decryptor checks before it releases a partial decryption:

1. the round is not in its log and it has not decrypted in this execution (at most one
   decryption per decryptor per round);
2. the request lists at least ``min_aggregate_size`` (and at most the packing capacity)
   contributions from *distinct* clients of the roster, each signed and proven over this
   execution's context, exactly the set forwarded to it;
3. it recomputes the product of those ciphertexts itself and decrypts that product (never a
   ciphertext chosen by the server).

Check 2 stops a lone ciphertext and fabricated padding (the server cannot sign for clients),
and *cancellation*: Paillier ciphertexts are malleable, so without the proofs a single
client colluding with the server could upload ``prod_(h != v) c_h^(-1)`` (computed from the
honest uploads the server shows it) and the aggregate, of any size, would decrypt to the
victim ``v``'s update alone; the colluder cannot open that combination, so it has no proof,
and a copied proof is bound to another sender. Check 1 stops differencing within a round.
Different quorums could still be asked for different products (``A`` and ``A`` minus ``v``,
the victim's upload forwarded to one quorum only): two quorums of size ``t`` among ``l``
decryptors share at least ``2t - l`` members, so when ``2t - l > c`` they share an honest
decryptor, which decrypts only once. Honest majority of every quorum intersection is
therefore a requirement of every server class that may deviate.

What collusion breaks it:

* the dealer with the server: everything; with distributed key generation, more than
  ``floor((l-1)/2)`` committee members pooling their key-generation views: everything;
* ``t`` decryptors with the server: any ciphertext (the threshold is the key), hence
  ``t > c`` in every class, the curious one included;
* ``2t - l <= c``: two quorums that overlap only in colluders, hence one client's update by
  differencing (excluded by the parameters below for servers that may deviate);
* lost round logs *and* a decryptor that skips the freshness check; or a client that lost
  its log and uploads twice in one round (a fresh encryption, but of the same update);
* ``min_aggregate_size - 1`` colluding (Sybil) clients with the server: the one honest
  contribution in an aggregate of minimum size (colluders who *follow* the protocol; the
  proofs stop colluders who cancel honest contributions). Hence ``min_aggregate_size >= C + 2``
  (the same rule as the masking protocols);
* across rounds (distinct round ids) the server may aggregate different cohorts (all
  clients, then all but one): a per-round protocol cannot prevent this; the clients' fresh
  DP noise of each round, accounted by the ledger, must bound what it learns.

Robustness: the server verifies every nonce, upload and partial decryption on receipt and
leaves out a party whose message fails (a client with a bad signature is dropped, the round
goes on); ``t <= l - D`` decryptors must remain after ``D`` dropouts or refusals.

Server classes (:class:`~threat_models.model.ServerClass`) map to the variant:

* ``CURIOUS``: follows the protocol (so do its colluding clients); ``t > c`` suffices;
  signatures and proofs are not needed (nonces and round logs are still used).
* ``SEMI_MALICIOUS``: may lie about who contributed or dropped out, run a round id twice,
  and its colluding clients and decryptors may send anything: contributions and nonces
  must be signed (PKI), contributions carry proofs of plaintext knowledge, partial
  decryptions carry proofs of correctness (so that a colluding decryptor cannot abort the
  round with a wrong partial), and ``2t > l + c``.
* ``MALICIOUS``: additionally arbitrary messages: the same checks (every message is
  validated by its receiver).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from secagg.errors import InfeasibleThreatModelError, InvalidParameterError
from secagg.validation import is_int, is_real
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
    if not is_real(value):
        raise InvalidParameterError(f"{name} must be a float in [0, 1), got {value!r}")
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise InvalidParameterError(f"{name} must lie in [0, 1), got {value!r}")
    return float(value)


def minimum_decryption_threshold(server: ServerClass, n_decryptors: int, colluding: int) -> int:
    """Smallest safe ``t``: ``t >= 2``, ``t > c``, and ``2t - l > c`` when the server may deviate.

    Args:
        server: the server class.
        n_decryptors: ``l``.
        colluding: ``c``, colluding decryptors (count them with
            :meth:`ThreatModel.max_colluders`).
    """
    if not is_int(colluding) or colluding < 0:
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
        decryptor_colluding_fraction: fraction of decryptors that may collude with the server;
            ``c = ceil(fraction * l)`` as :meth:`ThreatModel.max_colluders` counts.
        decryptor_dropout_fraction: fraction of decryptors that may be missing;
            ``ceil(fraction * l)`` as :meth:`ThreatModel.max_dropouts` counts.
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
    if not is_int(n_clients) or n_clients < 2:
        raise InvalidParameterError(f"n_clients must be an int >= 2, got {n_clients!r}")
    committee = n_clients if n_decryptors is None else n_decryptors
    if not is_int(committee) or committee < 2:
        raise InvalidParameterError(f"n_decryptors must be an int >= 2, got {committee!r}")
    capacity = n_clients if max_clients is None else max_clients
    if not is_int(capacity) or capacity < n_clients:
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
