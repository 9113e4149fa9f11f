"""One committee member's part in distributed Paillier key generation, as a state machine.

The committee of ``l >= 3`` parties runs the steps of
:mod:`secagg.primitives.distributed_paillier` (Boneh--Franklin candidates, distributed
sieving and BGW for ``N``, the biprimality test, the exponent and its integer resharing,
verification keys). Nobody ever holds ``p``, ``q``, ``phi`` or the decryption exponent;
each party ends with a :class:`~secagg.primitives.threshold_paillier.KeyShare` that
:func:`~secagg.primitives.threshold_paillier.partial_decrypt` uses unchanged.

Phases (:class:`~protocols.paillier.keygen_messages.KeygenPhase`), each one message from
every party:

1. ``HELLO``: an X25519 key for the pairwise channels, signed with the party's Ed25519
   identity key (from the PKI that the Paillier round uses too).
2. per *attempt* (a batch of candidates): ``SIEVE`` (pairwise) and ``SIEVE_OPEN``
   (broadcast): ``N mod M_j`` for every candidate; ``MODULUS`` / ``MODULUS_OPEN``: ``N`` for
   the survivors; ``BIPRIMALITY``: one base per surviving ``N``; ``BIPRIMALITY_CONFIRM``: the
   other bases for the first that passed. A batch without a biprime starts the next attempt.
3. ``EXPONENT`` (pairwise), ``THETA`` (broadcast; ``gcd(theta, N) != 1`` restarts the
   attempt), ``KEY_SHARES`` (pairwise), ``VERIFICATION`` (broadcast ``v_i`` and a digest of the
   public transcript, which every party compares with its own).

Pairwise payloads travel under AES-GCM (:class:`secagg.primitives.aead.ShareCipher`) with a
key from X25519 + HKDF per session and pair (:func:`secagg.primitives.keys.derive_pair_key`),
the associated data binding session, attempt, phase, sender and recipient; broadcasts are
signed over the same fields. A party rejects every message that is not of its current
session, attempt and phase, from a committee member, once (typed errors, no state change);
a message of a phase it has not reached is a :class:`~secagg.errors.StageError`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gmpy2
import numpy as np
from phe import paillier as phe_paillier

from protocols.paillier.keygen_messages import (
    DIGEST_BYTES,
    MAX_ATTEMPTS,
    MAX_SESSION,
    PROTOCOL,
    KeygenBroadcast,
    KeygenHello,
    KeygenMessage,
    KeygenPhase,
    KeygenShares,
    broadcast_transcript,
    channel_round,
    hello_transcript,
    pack_ints,
    pack_residues,
    signed_width,
    unpack_ints,
    unpack_residues,
)
from secagg.errors import (
    InvalidParameterError,
    MessageError,
    ProtocolAbortError,
    ReplayError,
    StageError,
)
from secagg.primitives.aead import ShareCipher
from secagg.primitives.distributed_paillier import (
    I64,
    KeygenParameters,
    biprimality_bases,
    biprimality_holds,
    biprimality_values,
    draw_candidate_shares,
    interpolate_field,
    interpolate_residues,
    passes_trial_division,
    phi_share,
    product_share,
    random_mask,
    rerandomised_product_share,
    residue_survivors,
    residues_of,
    share_field,
    share_integer,
    share_residues,
    theta_inverse,
    verification_base,
    verification_keys_consistent,
    zero_mask,
)
from secagg.primitives.keys import KeyPair, Purpose, derive_pair_key
from secagg.primitives.signing import IdentityKey, verify_signature
from secagg.primitives.threshold_paillier import KeyShare, ThresholdPublicKey
from secagg.primitives.transcript import canonical
from secagg.validation import is_int, require_int

__all__ = ["KeygenParty"]


@dataclass
class _Attempt:
    """One party's secrets and received values of one attempt (erased when it ends)."""

    p_shares: list[int] = field(default_factory=list, repr=False)
    q_shares: list[int] = field(default_factory=list, repr=False)
    received: dict[int, Any] = field(default_factory=dict, repr=False)
    own: Any = field(default=None, repr=False)
    sieve_residues: I64 | None = field(default=None, repr=False)
    survivors: list[int] = field(default_factory=list)
    moduli: list[tuple[int, int]] = field(default_factory=list)
    chosen: tuple[int, int] | None = None
    phi_share: int | None = field(default=None, repr=False)
    product_share: int | None = field(default=None, repr=False)
    zero_masks_out: list[int] = field(default_factory=list, repr=False)
    theta: int | None = None
    exponent_share: int | None = field(default=None, repr=False)
    key_share: int | None = field(default=None, repr=False)
    verification_keys: dict[int, int] = field(default_factory=dict)


class KeygenParty:
    """One committee member's key generation, as a pure state machine.

    Args:
        params: the public parameters (every member and the server use the same).
        session: a fresh id for this run (binds every message; never reuse one).
        party_id: this member's id (a key of ``committee``).
        committee: party id -> Ed25519 identity public key of every member (from the PKI);
            the share index of a member is its rank among the sorted ids (1-based).
        identity: this member's identity key (signs its hello and broadcasts).

    ``start()`` returns the hello; ``handle(message)`` takes one relayed message and returns
    what to send next (nothing until every peer's message of the phase is in). When
    :attr:`finished`, :attr:`key_share` holds the share and :attr:`public_key` the key.
    """

    def __init__(
        self,
        params: KeygenParameters,
        *,
        session: int,
        party_id: int,
        committee: Mapping[int, bytes],
        identity: IdentityKey,
    ) -> None:
        if not isinstance(params, KeygenParameters):
            raise InvalidParameterError("params must be KeygenParameters")
        session = require_int("session", session, lo=0, hi=MAX_SESSION)
        ids = sorted(committee)
        if len(ids) != params.n_parties or not all(is_int(i) and 0 < i < 1 << 63 for i in ids):
            raise InvalidParameterError(
                f"committee must map {params.n_parties} party ids in [1, 2^63) to identity keys"
            )
        if party_id not in committee:
            raise InvalidParameterError("party_id is not a committee member")
        if not isinstance(identity, IdentityKey) or identity.public_bytes != committee[party_id]:
            raise InvalidParameterError("identity does not match the committee's key for party_id")
        self._params = params
        self._session = session
        self._id = party_id
        self._committee = dict(committee)
        self._index_of = {pid: i for i, pid in enumerate(ids, start=1)}
        self.index = self._index_of[party_id]
        self._identity = identity
        self._exchange: KeyPair | None = KeyPair.generate()
        self._ciphers: dict[int, ShareCipher] = {}
        self._hellos: dict[int, bytes] = {}
        self._phase: KeygenPhase | None = None
        self._attempt_no = 0
        self._attempt = _Attempt()
        self.attempts = 0
        self.candidates = 0
        self._result: tuple[ThresholdPublicKey, KeyShare] | None = None

    # ------------------------------------------------------------------ public view

    @property
    def party_id(self) -> int:
        return self._id

    @property
    def phase(self) -> KeygenPhase | None:
        """The phase whose messages this party is collecting (``None`` before start / when done)."""
        return self._phase

    @property
    def attempt(self) -> int:
        return self._attempt_no

    @property
    def finished(self) -> bool:
        return self._result is not None

    @property
    def public_key(self) -> ThresholdPublicKey:
        """The generated key (raises :class:`StageError` before the end)."""
        if self._result is None:
            raise StageError("key generation has not finished")
        return self._result[0]

    @property
    def key_share(self) -> KeyShare:
        """This member's share (raises :class:`StageError` before the end). Secret."""
        if self._result is None:
            raise StageError("key generation has not finished")
        return self._result[1]

    def _context(self, attempt: int) -> bytes:
        return canonical(PROTOCOL, "context", self._session, sorted(self._committee), attempt)

    # ------------------------------------------------------------------ sending

    def start(self) -> list[KeygenMessage]:
        """The signed hello (once)."""
        if self._phase is not None or self._exchange is None or self._hellos:
            raise StageError("key generation already started")
        self._phase = KeygenPhase.HELLO
        key = self._exchange.public_bytes
        return [
            KeygenHello(
                session=self._session,
                sender=self._id,
                exchange_key=key,
                signature=self._identity.sign(hello_transcript(self._session, self._id, key)),
            )
        ]

    def _send_pairwise(
        self, phase: KeygenPhase, payloads: Mapping[int, bytes]
    ) -> list[KeygenMessage]:
        self._phase = phase
        channel = channel_round(self._session, self._attempt_no, phase)
        out: list[KeygenMessage] = []
        for pid, payload in sorted(payloads.items()):
            out.append(
                KeygenShares(
                    session=self._session,
                    sender=self._id,
                    recipient=pid,
                    phase=phase,
                    attempt=self._attempt_no,
                    ciphertext=self._ciphers[pid].encrypt(
                        payload, round_id=channel, sender=self._id, recipient=pid
                    ),
                )
            )
        return out

    def _send_broadcast(self, phase: KeygenPhase, payload: bytes) -> list[KeygenMessage]:
        self._phase = phase
        signature = self._identity.sign(
            broadcast_transcript(self._session, self._id, phase, self._attempt_no, payload)
        )
        return [
            KeygenBroadcast(
                session=self._session,
                sender=self._id,
                phase=phase,
                attempt=self._attempt_no,
                payload=payload,
                signature=signature,
            )
        ]

    # ------------------------------------------------------------------ receiving

    def handle(self, message: KeygenMessage) -> list[KeygenMessage]:
        """Take one relayed message; return the next messages once the phase is complete.

        Raises:
            ReplayError: another session or attempt.
            StageError: a message of another phase, or after the end.
            MessageError: from a non-member, from itself, addressed to another, a duplicate,
                or a payload of the wrong size.
            AuthenticationError: bad signature or ciphertext.
        """
        if self._result is not None or self._phase is None:
            raise StageError("not collecting messages")
        if not isinstance(message, (KeygenHello, KeygenShares, KeygenBroadcast)):
            raise MessageError(f"not a key-generation message: {type(message).__name__}")
        if message.session != self._session:
            raise ReplayError("message of another key-generation session")
        sender = message.sender
        if sender not in self._committee or sender == self._id:
            raise MessageError("message from a party that is not a peer in this committee")
        if isinstance(message, KeygenHello):
            if self._phase is not KeygenPhase.HELLO:
                raise StageError("hello outside the hello phase")
            if sender in self._hellos:
                raise MessageError("duplicate hello")
            verify_signature(
                self._committee[sender],
                message.signature,
                hello_transcript(self._session, sender, message.exchange_key),
            )
            if self._exchange is None:
                raise StageError("exchange key already erased")
            key = derive_pair_key(
                self._exchange,
                message.exchange_key,
                purpose=Purpose.SHARE_ENCRYPTION,
                round_id=self._session,
                self_id=self._id,
                peer_id=sender,
            )
            self._hellos[sender] = message.exchange_key
            self._ciphers[sender] = ShareCipher(key)
            if len(self._hellos) < len(self._committee) - 1:
                return []
            self._exchange = None  # the pair keys are derived; forget the private key
            return self._new_attempt(first=True)
        if message.attempt != self._attempt_no:
            raise ReplayError(f"message of attempt {message.attempt} in attempt {self._attempt_no}")
        if message.phase is not self._phase:
            raise StageError(f"message of phase {message.phase.name} in phase {self._phase.name}")
        received = self._attempt.received
        if sender in received:
            raise MessageError("duplicate message of this phase")
        if isinstance(message, KeygenShares):
            if message.recipient != self._id:
                raise MessageError("shares addressed to another party")
            payload = self._ciphers[sender].decrypt(
                message.ciphertext,
                round_id=channel_round(self._session, self._attempt_no, message.phase),
                sender=sender,
                recipient=self._id,
            )
        else:
            verify_signature(
                self._committee[sender],
                message.signature,
                broadcast_transcript(
                    self._session, sender, message.phase, message.attempt, message.payload
                ),
            )
            payload = message.payload
        value = self._parse(message.phase, payload)
        received[sender] = value
        if len(received) < len(self._committee) - 1:
            return []
        return self._complete()

    # ------------------------------------------------------------------ phases

    @property
    def _n(self) -> int:
        return self._params.n_parties

    def _by_index(self) -> dict[int, Any]:
        values = {self._index_of[pid]: v for pid, v in self._attempt.received.items()}
        values[self.index] = self._attempt.own
        return values

    def _field_width(self) -> int:
        return (self._params.field_prime.bit_length() + 7) // 8 + 1

    def _modulus_width(self) -> int:
        return self._params.key_bits // 8 + 1

    def _exponent_width(self) -> int:
        b = self._params.bounds
        log_l = self._n.bit_length()
        top = max(b.phi_coefficient_bits, b.beta_coefficient_bits) + self._params.degree * log_l + 2
        return signed_width(max(top, b.zero_mask_bits + 1))

    def _theta_width(self) -> int:
        b = self._params.bounds
        return signed_width(max(b.product_bits, self._params.key_bits + b.mask_bits) + 2)

    def _key_share_width(self) -> int:
        b = self._params.bounds
        return signed_width(
            b.exponent_coefficient_bits + self._params.threshold * self._n.bit_length() + 2
        )

    def _parse(self, phase: KeygenPhase, payload: bytes) -> Any:
        params = self._params
        attempt = self._attempt
        moduli = params.sieve_moduli
        if phase is KeygenPhase.SIEVE:
            return unpack_residues(payload, (3, params.batch_size, len(moduli)), moduli)
        if phase is KeygenPhase.SIEVE_OPEN:
            return unpack_residues(payload, (params.batch_size, len(moduli)), moduli)
        if phase is KeygenPhase.MODULUS:
            values = unpack_ints(payload, self._field_width(), 3 * len(attempt.survivors))
            if any(not 0 <= v < params.field_prime for v in values):
                raise MessageError("field element out of range")
            return values
        if phase is KeygenPhase.MODULUS_OPEN:
            values = unpack_ints(payload, self._field_width(), len(attempt.survivors))
            if any(not 0 <= v < params.field_prime for v in values):
                raise MessageError("field element out of range")
            return values
        if phase in (KeygenPhase.BIPRIMALITY, KeygenPhase.BIPRIMALITY_CONFIRM):
            count = (
                len(attempt.moduli)
                if phase is KeygenPhase.BIPRIMALITY
                else params.biprimality_rounds - 1
            )
            values = unpack_ints(payload, self._modulus_width(), count)
            moduli_list = (
                [n for _, n in attempt.moduli]
                if phase is KeygenPhase.BIPRIMALITY
                else [self._chosen_modulus()] * count
            )
            if any(
                not 0 < v < n or gmpy2.gcd(v, n) != 1
                for v, n in zip(values, moduli_list, strict=True)
            ):
                raise MessageError("biprimality value is not a unit")
            return values
        if phase is KeygenPhase.EXPONENT:
            return unpack_ints(payload, self._exponent_width(), 3)
        if phase is KeygenPhase.THETA:
            (value,) = unpack_ints(payload, self._theta_width(), 1)
            return value
        if phase is KeygenPhase.KEY_SHARES:
            (value,) = unpack_ints(payload, self._key_share_width(), 1)
            return value
        # VERIFICATION: v_i (n^2 width) and the transcript digest
        n = self._chosen_modulus()
        width = (2 * params.key_bits + 7) // 8
        if len(payload) != width + DIGEST_BYTES:
            raise MessageError("verification message has the wrong size")
        key = int.from_bytes(payload[:width], "big")
        if not 0 < key < n * n or gmpy2.gcd(key, n) != 1:
            raise MessageError("verification key is not a unit modulo N^2")
        return key, payload[width:]

    def _chosen_modulus(self) -> int:
        if self._attempt.chosen is None:
            raise StageError("no modulus chosen yet")
        return self._attempt.chosen[1]

    def _new_attempt(self, *, first: bool = False) -> list[KeygenMessage]:
        if not first:
            self._attempt_no += 1
        if self._attempt_no >= MAX_ATTEMPTS:
            raise ProtocolAbortError("no key found within the attempt limit")
        self.attempts += 1
        params = self._params
        count = params.batch_size
        self.candidates += count
        ps, qs = draw_candidate_shares(params, self.index, count)
        self._attempt = _Attempt(p_shares=ps, q_shares=qs)
        moduli = params.sieve_moduli
        p_res = residues_of(ps, moduli)
        q_res = residues_of(qs, moduli)
        k = params.degree
        points = np.stack(
            [
                share_residues(p_res, moduli, k, self._n),
                share_residues(q_res, moduli, k, self._n),
                share_residues(p_res, moduli, 2 * k, self._n, zero=True),
            ],
            axis=1,
        )  # (l, 3, K, J)
        self._attempt.own = points[self.index - 1]
        payloads = {
            pid: pack_residues(points[self._index_of[pid] - 1])
            for pid in self._committee
            if pid != self._id
        }
        return self._send_pairwise(KeygenPhase.SIEVE, payloads)

    def _complete(self) -> list[KeygenMessage]:
        phase = self._phase
        if phase is KeygenPhase.SIEVE:
            return self._after_sieve()
        if phase is KeygenPhase.SIEVE_OPEN:
            return self._after_sieve_open()
        if phase is KeygenPhase.MODULUS:
            return self._after_modulus()
        if phase is KeygenPhase.MODULUS_OPEN:
            return self._after_modulus_open()
        if phase is KeygenPhase.BIPRIMALITY:
            return self._after_biprimality()
        if phase is KeygenPhase.BIPRIMALITY_CONFIRM:
            return self._after_confirm()
        if phase is KeygenPhase.EXPONENT:
            return self._after_exponent()
        if phase is KeygenPhase.THETA:
            return self._after_theta()
        if phase is KeygenPhase.KEY_SHARES:
            return self._after_key_shares()
        return self._after_verification()

    def _after_sieve(self) -> list[KeygenMessage]:
        moduli = np.asarray(self._params.sieve_moduli, dtype=np.int64)
        shares = [np.asarray(v) for v in self._by_index().values()]
        total = np.zeros_like(shares[0])
        for s in shares:
            total = (total + s) % moduli
        point = (total[0] * total[1] + total[2]) % moduli
        self._attempt.own = point
        self._attempt.received = {}
        return self._send_broadcast(KeygenPhase.SIEVE_OPEN, pack_residues(point))

    def _after_sieve_open(self) -> list[KeygenMessage]:
        params = self._params
        points = self._by_index()
        residues = interpolate_residues(
            {i: np.asarray(points[i]) for i in params.product_parties}, params.sieve_moduli
        )
        attempt = self._attempt
        attempt.sieve_residues = residues
        attempt.survivors = residue_survivors(residues, params.sieve_moduli)
        if not attempt.survivors:
            return self._new_attempt()
        values = [attempt.p_shares[c] for c in attempt.survivors] + [
            attempt.q_shares[c] for c in attempt.survivors
        ]
        k = params.degree
        shared = share_field(values, k, self._n, params.field_prime)
        zeros = share_field([0] * len(attempt.survivors), 2 * k, self._n, params.field_prime)
        width = self._field_width()
        attempt.own = shared[self.index - 1] + zeros[self.index - 1]
        attempt.received = {}
        payloads = {
            pid: pack_ints(shared[self._index_of[pid] - 1] + zeros[self._index_of[pid] - 1], width)
            for pid in self._committee
            if pid != self._id
        }
        return self._send_pairwise(KeygenPhase.MODULUS, payloads)

    def _after_modulus(self) -> list[KeygenMessage]:
        prime = gmpy2.mpz(self._params.field_prime)
        count = len(self._attempt.survivors)
        sums = [gmpy2.mpz(0)] * (3 * count)
        for values in self._by_index().values():
            sums = [(a + b) % prime for a, b in zip(sums, values, strict=True)]
        points = [
            int((sums[c] * sums[count + c] + sums[2 * count + c]) % prime) for c in range(count)
        ]
        self._attempt.own = points
        self._attempt.received = {}
        return self._send_broadcast(
            KeygenPhase.MODULUS_OPEN, pack_ints(points, self._field_width())
        )

    def _after_modulus_open(self) -> list[KeygenMessage]:
        params = self._params
        attempt = self._attempt
        points = self._by_index()
        moduli = interpolate_field(
            {i: points[i] for i in params.product_parties}, params.field_prime
        )
        residues = attempt.sieve_residues
        if residues is None:
            raise StageError("sieve residues missing")
        for c, n in zip(attempt.survivors, moduli, strict=True):
            expected = residues[c].tolist()
            if [n % m for m in params.sieve_moduli] != expected:
                raise ProtocolAbortError("the opened modulus contradicts the sieve")
        attempt.moduli = [
            (c, n)
            for c, n in zip(attempt.survivors, moduli, strict=True)
            if passes_trial_division(n, params)
        ]
        attempt.received = {}
        if not attempt.moduli:
            return self._new_attempt()
        values = []
        for c, n in attempt.moduli:
            (g,) = biprimality_bases(n, self._context(self._attempt_no), 1)
            values += biprimality_values(
                self.index, n, attempt.p_shares[c], attempt.q_shares[c], [g]
            )
        attempt.own = values
        return self._send_broadcast(
            KeygenPhase.BIPRIMALITY, pack_ints(values, self._modulus_width())
        )

    def _after_biprimality(self) -> list[KeygenMessage]:
        attempt = self._attempt
        points = self._by_index()
        chosen = None
        for k, (c, n) in enumerate(attempt.moduli):
            if biprimality_holds(n, {i: [v[k]] for i, v in points.items()}):
                chosen = (c, n)
                break
        attempt.received = {}
        if chosen is None:
            return self._new_attempt()
        attempt.chosen = chosen
        rounds = self._params.biprimality_rounds - 1
        if rounds == 0:
            return self._start_exponent()
        c, n = chosen
        bases = biprimality_bases(n, self._context(self._attempt_no), rounds, start=1)
        values = biprimality_values(self.index, n, attempt.p_shares[c], attempt.q_shares[c], bases)
        attempt.own = values
        return self._send_broadcast(
            KeygenPhase.BIPRIMALITY_CONFIRM, pack_ints(values, self._modulus_width())
        )

    def _after_confirm(self) -> list[KeygenMessage]:
        points = self._by_index()
        n = self._chosen_modulus()
        self._attempt.received = {}
        if not biprimality_holds(n, points):
            return self._new_attempt()
        return self._start_exponent()

    def _start_exponent(self) -> list[KeygenMessage]:
        params = self._params
        attempt = self._attempt
        if attempt.chosen is None:
            raise StageError("no modulus chosen")
        c, n = attempt.chosen
        phi_i = phi_share(self.index, n, attempt.p_shares[c], attempt.q_shares[c])
        # the other candidates' shares and this one's p_i, q_i are no longer needed
        attempt.p_shares, attempt.q_shares = [], []
        attempt.sieve_residues = None
        bounds = params.bounds
        beta_i = secrets.randbits(bounds.beta_bits)
        phi_points = share_integer(phi_i, params.degree, self._n, bounds.phi_coefficient_bits)
        beta_points = share_integer(beta_i, params.degree, self._n, bounds.beta_coefficient_bits)
        del phi_i, beta_i
        width = self._exponent_width()
        # the third value is a pairwise sharing of zero that re-randomises the product
        # shares before they are published (THETA): without it they would reveal the
        # product polynomial modulo N
        attempt.own = [phi_points[self.index - 1], beta_points[self.index - 1], 0]
        masks = {pid: zero_mask(params) for pid in self._committee if pid != self._id}
        attempt.zero_masks_out = list(masks.values())
        payloads = {
            pid: pack_ints(
                [phi_points[self._index_of[pid] - 1], beta_points[self._index_of[pid] - 1], mask],
                width,
            )
            for pid, mask in masks.items()
        }
        return self._send_pairwise(KeygenPhase.EXPONENT, payloads)

    def _after_exponent(self) -> list[KeygenMessage]:
        params = self._params
        attempt = self._attempt
        n = self._chosen_modulus()
        received = self._by_index().values()
        phi_point = sum(int(v[0]) for v in received)
        beta_point = sum(int(v[1]) for v in received)
        masks_in = [int(v[2]) for v in received]
        a = rerandomised_product_share(
            product_share(params, self.index, phi_point, beta_point),
            masks_in,
            attempt.zero_masks_out,
        )
        del phi_point, beta_point, masks_in
        attempt.zero_masks_out = []
        attempt.product_share = a
        w = a + n * random_mask(params)
        attempt.own = w
        attempt.received = {}
        return self._send_broadcast(KeygenPhase.THETA, pack_ints([w], self._theta_width()))

    def _after_theta(self) -> list[KeygenMessage]:
        params = self._params
        attempt = self._attempt
        n = self._chosen_modulus()
        theta = sum(int(v) for v in self._by_index().values())
        attempt.received = {}
        mu = theta_inverse(theta, n)
        if mu is None or attempt.product_share is None:
            # gcd(N, phi) != 1: not a usable Paillier modulus
            return self._new_attempt()
        attempt.theta = theta
        d_j = attempt.product_share * mu
        attempt.product_share = None
        points = share_integer(
            d_j, params.threshold - 1, self._n, params.bounds.exponent_coefficient_bits
        )
        del d_j
        width = self._key_share_width()
        attempt.own = points[self.index - 1]
        payloads = {
            pid: pack_ints([points[self._index_of[pid] - 1]], width)
            for pid in self._committee
            if pid != self._id
        }
        return self._send_pairwise(KeygenPhase.KEY_SHARES, payloads)

    def _transcript_digest(self) -> bytes:
        n = self._chosen_modulus()
        theta = self._attempt.theta or 0
        width = (self._params.key_bits + 7) // 8
        return hashlib.sha256(
            canonical(
                PROTOCOL,
                "public-transcript",
                self._context(self._attempt_no),
                n.to_bytes(width, "big"),
                theta.to_bytes((theta.bit_length() + 7) // 8, "big"),
            )
        ).digest()

    def _after_key_shares(self) -> list[KeygenMessage]:
        params = self._params
        attempt = self._attempt
        n = self._chosen_modulus()
        s_i = sum(int(v) for v in self._by_index().values())
        attempt.key_share = s_i
        attempt.received = {}
        v = verification_base(n, self._transcript_digest())
        n2 = gmpy2.mpz(n) ** 2
        v_i = int(gmpy2.powmod(v, params.delta * s_i, n2))
        attempt.own = (v_i, self._transcript_digest())
        width = (2 * params.key_bits + 7) // 8
        return self._send_broadcast(
            KeygenPhase.VERIFICATION, v_i.to_bytes(width, "big") + self._transcript_digest()
        )

    def _after_verification(self) -> list[KeygenMessage]:
        params = self._params
        attempt = self._attempt
        n = self._chosen_modulus()
        digest = self._transcript_digest()
        entries = self._by_index()
        keys = []
        for i in range(1, self._n + 1):
            key, their = entries[i]
            if not secrets.compare_digest(their, digest):
                raise ProtocolAbortError("committee members disagree on the public transcript")
            keys.append(int(key))
        if not verification_keys_consistent(n, params.threshold, keys, params.delta):
            raise ProtocolAbortError("the verification keys do not interpolate a valid exponent")
        public = ThresholdPublicKey(
            paillier=phe_paillier.PaillierPublicKey(n),
            n_decryptors=self._n,
            threshold=params.threshold,
            verification_base=verification_base(n, digest),
            verification_keys=tuple(keys),
            encryption_base=None,
            share_bits=params.bounds.key_share_bits,
        )
        if attempt.key_share is None:
            raise StageError("key share missing")
        share = KeyShare(index=self.index, secret=attempt.key_share, public_key=public)
        self._result = (public, share)
        self._attempt = _Attempt()
        self._ciphers = {}
        self._phase = None
        return []
