"""Public configuration of a Paillier round and the decryptors' hardening switches.

:class:`PaillierRoundConfig` holds what every party agrees on before a round starts: the
round id, the dealt (or distributed) threshold key, the encoder and its packing, the
minimum aggregate size, the roster of clients and decryptors with their identity keys,
and which signatures and proofs are required. :class:`PaillierHardening` lists the checks
an honest decryptor makes against a server that wants one client's update decrypted; all
are on by default and the only way to turn them off is to say so explicitly
(:meth:`PaillierHardening.unhardened`), which exists to build the *unhardened baseline*
that attack evaluations compare against.

:func:`party_round_log` is where a party records the rounds it took part in when it is
given no log of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from protocols.framing import MAX_U64
from protocols.round_log import RoundLog, identity_log
from secagg.errors import InvalidParameterError
from secagg.primitives.encoding import VectorEncoder
from secagg.primitives.paillier import PackingScheme, Randomness
from secagg.primitives.signing import IdentityKey
from secagg.primitives.threshold_paillier import ThresholdPublicKey
from secagg.primitives.transcript import canonical
from secagg.validation import is_int, require_int

__all__ = [
    "PROTOCOL",
    "MAX_U64",
    "PaillierRoundConfig",
    "PaillierHardening",
    "party_round_log",
]

PROTOCOL = "secagg/paillier-round/v2"
"""Domain separator of every transcript of a Paillier round."""


def _is_u64(value: object) -> bool:
    return is_int(value) and 0 <= value <= MAX_U64


@dataclass(frozen=True)
class PaillierRoundConfig:
    """Everything the parties of one round agree on before it starts.

    Attributes:
        round_id: the round (binds signatures and proofs; replays across rounds fail). The
            server picks it, so it is not fresh by itself: every execution also gets a fresh
            context from the decryptors' nonces
            (:func:`~protocols.paillier.verification.execution_context`).
        public_key: the dealt threshold key (authenticated out of band).
        encoder: quantiser of the updates (ring Z_(2^bits), ``max_clients`` summands).
        packing: slot layout derived from key and encoder.
        length: ``d``, the update dimension.
        min_aggregate_size: fewest contributions a decryptor will help decrypt.
        roster: client id -> Ed25519 identity public key (from a PKI); the clients allowed
            to contribute. With ``signed_contributions=False`` the keys may be empty bytes.
        decryptors: party id -> key-share index of every decryptor (default ``i -> i``). When
            the clients are the decryptors, the party ids are client ids.
        decryptor_keys: party id -> Ed25519 identity public key of every decryptor (from the
            same PKI), which signs its fresh nonces. Default: the roster's key of each
            decryptor that is also a client. Required for the others with
            ``signed_contributions``.
        signed_contributions: contributions and decryptor nonces must carry valid signatures.
        plaintext_proofs: contributions carry proofs of plaintext knowledge (bound to the
            execution and the sender), verified by the server and the decryptors.
        decryption_proofs: partial decryptions carry proofs that the server verifies.
        randomness: encryption randomness (``FIXED_BASE`` by default; a key without a fixed
            base, as made by distributed key generation, needs ``STANDARD``).
    """

    round_id: int
    public_key: ThresholdPublicKey
    encoder: VectorEncoder
    packing: PackingScheme
    length: int
    min_aggregate_size: int
    roster: Mapping[int, bytes]
    decryptors: Mapping[int, int] | None = None
    decryptor_keys: Mapping[int, bytes] | None = None
    signed_contributions: bool = True
    plaintext_proofs: bool = True
    decryption_proofs: bool = True
    randomness: Randomness = Randomness.FIXED_BASE

    def __post_init__(self) -> None:
        require_int("round_id", self.round_id, lo=0, hi=MAX_U64)
        if not isinstance(self.public_key, ThresholdPublicKey):
            raise InvalidParameterError("public_key must be a ThresholdPublicKey")
        if not isinstance(self.packing, PackingScheme):
            raise InvalidParameterError("packing must be a PackingScheme")
        if self.public_key.encryption_base is None and self.randomness is not Randomness.STANDARD:
            raise InvalidParameterError(
                "this key has no checked fixed encryption base (distributed key generation); "
                "use randomness=Randomness.STANDARD"
            )
        if self.packing.value_bits != self.encoder.bits:
            raise InvalidParameterError("packing and encoder use different rings")
        if self.packing.max_clients < self.encoder.max_clients:
            raise InvalidParameterError("packing capacity is below the encoder's max_clients")
        require_int("length", self.length, lo=1)
        require_int("min_aggregate_size", self.min_aggregate_size, lo=1)
        if self.min_aggregate_size > self.packing.max_clients:
            raise InvalidParameterError("min_aggregate_size exceeds the packing capacity")
        if (
            not isinstance(self.roster, Mapping)
            or not self.roster
            or not all(_is_u64(k) and isinstance(v, bytes) for k, v in self.roster.items())
        ):
            raise InvalidParameterError(
                "roster must map client ids in [0, 2^64) to identity key bytes"
            )
        roster = dict(self.roster)
        object.__setattr__(self, "roster", roster)
        count = self.public_key.n_decryptors
        decryptors = (
            {i: i for i in range(1, count + 1)}
            if self.decryptors is None
            else dict(self.decryptors)
        )
        if sorted(decryptors.values()) != list(range(1, count + 1)) or not all(
            _is_u64(k) for k in decryptors
        ):
            raise InvalidParameterError(
                f"decryptors must map {count} party ids in [0, 2^64) "
                f"to the share indices 1..{count}"
            )
        object.__setattr__(self, "decryptors", decryptors)
        given = {} if self.decryptor_keys is None else dict(self.decryptor_keys)
        if not set(given) <= set(decryptors) or not all(
            isinstance(v, bytes) for v in given.values()
        ):
            raise InvalidParameterError("decryptor_keys must map decryptor party ids to key bytes")
        keys = {pid: given.get(pid, roster.get(pid, b"")) for pid in decryptors}
        if self.signed_contributions and not all(keys.values()):
            raise InvalidParameterError(
                "signed contributions need every decryptor's identity key (decryptor_keys)"
            )
        object.__setattr__(self, "decryptor_keys", keys)

    @property
    def decryptor_parties(self) -> dict[int, int]:
        """Party id -> share index of every decryptor."""
        return dict(self.decryptors or {})

    @property
    def decryptor_identities(self) -> dict[int, bytes]:
        """Party id -> identity public key of every decryptor (empty bytes when unsigned)."""
        return dict(self.decryptor_keys or {})

    @property
    def encoded_length(self) -> int:
        """Ring elements per update after encoding."""
        return self.encoder.encoded_length(self.length)

    @property
    def context(self) -> bytes:
        """Bytes that bind partial-decryption proofs to this key and round."""
        return canonical(PROTOCOL, self.public_key.key_id, self.round_id)

    @property
    def ciphertext_width(self) -> int:
        """Bytes of one ciphertext (an element of ``Z_(n^2)``) on the wire."""
        return (self.public_key.n_squared.bit_length() + 7) // 8


@dataclass(frozen=True)
class PaillierHardening:
    """The decryptors' checks against a server that wants one client's update decrypted.

    All are on by default; :meth:`unhardened` (explicit opt-in) builds the deliberately weak
    baseline that attack evaluations compare against, and switching one flag off shows what
    that one check stops.

    Attributes:
        check_aggregate_size: refuse to decrypt fewer than ``min_aggregate_size``
            contributions (stops "decrypt this one client's ciphertext").
        single_decryption: decrypt at most once per round (stops differencing ``A`` against
            ``A`` minus one client within one execution).
        verify_plaintext_proofs: require each contribution's proof of plaintext knowledge
            (stops a colluding client from cancelling the others' ciphertexts).
        single_execution: claim the round in the decryptor's round log before committing a
            nonce or decrypting, and refuse a round already claimed (stops a second execution
            of one round id, also after a restart when the log is persisted).
        fresh_context: accept only uploads signed over the context that holds this
            decryptor's own fresh nonce of this execution (stops replaying uploads from an
            earlier execution even when the round log was lost).
    """

    check_aggregate_size: bool = True
    single_decryption: bool = True
    verify_plaintext_proofs: bool = True
    single_execution: bool = True
    fresh_context: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            if not isinstance(getattr(self, f.name), bool):
                raise InvalidParameterError(f"{f.name} must be a bool")

    @classmethod
    def unhardened(cls) -> PaillierHardening:
        """Every check off. INSECURE: only for demonstrating the attacks."""
        return cls(
            check_aggregate_size=False,
            single_decryption=False,
            verify_plaintext_proofs=False,
            single_execution=False,
            fresh_context=False,
        )


def party_round_log(round_log: RoundLog | None, identity: IdentityKey | None) -> RoundLog:
    """The round log a client or decryptor claims its rounds in.

    ``round_log`` when one is given; else the process-wide log of the identity key
    (:func:`protocols.round_log.identity_log`), or a fresh in-memory log without one.

    Raises:
        InvalidParameterError: ``round_log`` is neither ``None`` nor a ``RoundLog``.
    """
    if round_log is not None:
        if not isinstance(round_log, RoundLog):
            raise InvalidParameterError("round_log must be a RoundLog")
        return round_log
    return identity_log(identity.public_bytes) if identity is not None else RoundLog.in_memory()
