"""Distributed threshold Paillier key generation (protocols.paillier.keygen).

Keys are 512-bit (INSECURE, for speed) except in the one slow test that makes a real
2048-bit key. The Paillier conformance suite runs again on distributed keys.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import gmpy2
import numpy as np
import pytest
from test_paillier_conformance import TestPaillierConformance as _DealtConformance

from protocols import simulate
from protocols.paillier import PaillierRoundConfig, setup_paillier_round
from protocols.paillier.keygen import (
    DistributedKey,
    KeygenBroadcast,
    KeyGeneration,
    KeygenHello,
    KeygenMessage,
    KeygenParty,
    KeygenPhase,
    KeygenRunner,
    KeygenServer,
    KeygenShares,
    decode_keygen_message,
    encode_keygen_message,
    generate_distributed_key,
)
from secagg.errors import (
    AuthenticationError,
    InvalidParameterError,
    MessageError,
    ReplayError,
    RoundRestartError,
    StageError,
    ThresholdNotMetError,
)
from secagg.primitives.distributed_paillier import KeygenParameters, integer_lagrange
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.paillier import Randomness
from secagg.primitives.signing import IdentityKey
from secagg.primitives.threshold_paillier import (
    KeyShare,
    ThresholdPublicKey,
    combine_partial_decryptions,
    partial_decrypt,
    verify_partial_decryption,
)
from threat_models.model import ThreatModel
from threat_models.paillier import paillier_parameters

BITS = 512


@cache
def _distributed(
    n_decryptors: int, threshold: int
) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
    key = generate_distributed_key(
        list(range(1, n_decryptors + 1)),
        threshold=threshold,
        key_bits=BITS,
        hazmat_allow_weak_key=True,
    )
    return key.public_key, tuple(sorted(key.shares.values(), key=lambda s: s.index))


@pytest.fixture(scope="module")
def key() -> DistributedKey:
    return generate_distributed_key(
        [11, 22, 33, 44, 55], threshold=3, key_bits=BITS, hazmat_allow_weak_key=True
    )


# --------------------------------------------------------------------------- the key


def test_distributed_key_decrypts_exactly_with_any_quorum(key: DistributedKey) -> None:
    public = key.public_key
    assert public.n.bit_length() == BITS and public.n_decryptors == 5 and public.threshold == 3
    assert public.encryption_base is None and public.share_bits is not None
    assert key.committee == {11: 1, 22: 2, 33: 3, 44: 4, 55: 5}
    packing = public.packing(value_bits=16, max_clients=4)
    values = np.array([0, 1, 2, 65535, 4096, 77], dtype=np.uint64)
    vector = public.encryptor(packing).encrypt(values)
    shares = key.shares
    for quorum in ([11, 22, 33], [22, 44, 55], [11, 33, 55], [55, 44, 33, 22, 11]):
        partials = [partial_decrypt(shares[pid], vector, context=b"round") for pid in quorum]
        for partial in partials:
            verify_partial_decryption(public, vector, partial, context=b"round")
        plain = combine_partial_decryptions(public, vector, partials, context=b"round")
        assert np.array_equal(packing.unpack(plain, len(values), summands=1), values)
    # two partials are below the threshold
    partials = [partial_decrypt(shares[pid], vector, context=b"round") for pid in (11, 22)]
    with pytest.raises(ThresholdNotMetError):
        combine_partial_decryptions(public, vector, partials, context=b"round")


def test_a_wrong_partial_is_caught(key: DistributedKey) -> None:
    public = key.public_key
    packing = public.packing(value_bits=16, max_clients=4)
    vector = public.encryptor(packing).encrypt(np.array([5, 6], dtype=np.uint64))
    good = partial_decrypt(key.shares[22], vector, context=b"r")
    n2 = public.n_squared
    # shifting the plaintext component by (1 + n) fails the proof
    shifted = dataclasses.replace(good, values=tuple(v * (1 + public.n) % n2 for v in good.values))
    with pytest.raises(AuthenticationError):
        verify_partial_decryption(public, vector, shifted, context=b"r")
    # a partial of another share index fails too
    other = dataclasses.replace(partial_decrypt(key.shares[33], vector, context=b"r"), index=2)
    with pytest.raises(AuthenticationError):
        verify_partial_decryption(public, vector, other, context=b"r")


def test_round_refuses_a_fixed_base_with_a_distributed_key(key: DistributedKey) -> None:
    public = key.public_key
    encoder = FixedPointEncoder.symmetric(1.0, bits=16, max_clients=3)
    options: dict[str, Any] = {
        "round_id": 1,
        "public_key": public,
        "encoder": encoder,
        "packing": public.packing_for(encoder),
        "length": 3,
        "min_aggregate_size": 2,
        "roster": {1: b"", 2: b"", 3: b""},
        "decryptors": {11: 1, 22: 2, 33: 3, 44: 4, 55: 5},
        "signed_contributions": False,
    }
    with pytest.raises(InvalidParameterError, match="STANDARD"):
        PaillierRoundConfig(**options)
    assert (
        PaillierRoundConfig(**options, randomness=Randomness.STANDARD).randomness
        is Randomness.STANDARD
    )


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("committee_size", [None, 4])
def test_simulate_with_distributed_key_generation(committee_size: int | None) -> None:
    rng = np.random.default_rng(3)
    updates = {cid: rng.uniform(-1, 1, size=30) for cid in range(1, 7)}
    result = simulate(
        updates,
        protocol="paillier",
        key_generation="distributed",
        key_bits=BITS,
        hazmat_allow_weak_key=True,
        committee_size=committee_size,
        dropouts={"unmasking": [6]} if committee_size is None else None,
        seed=1,
    )
    assert result.details["key_generation"] == "distributed"
    expected = sum(updates[c] for c in result.survivors)
    assert np.max(np.abs(result.aggregate - expected)) < 1e-6
    assert result.details["decryptors"] == (6 if committee_size is None else 4)


def test_simulate_rejects_an_unknown_key_generation() -> None:
    updates = {cid: np.zeros(3) for cid in range(1, 7)}
    with pytest.raises(InvalidParameterError, match="key_generation"):
        simulate(
            updates,
            protocol="paillier",
            key_generation="oracle",
            key_bits=BITS,
            hazmat_allow_weak_key=True,
        )


def test_dealer_remains_the_default() -> None:
    updates = {cid: np.ones(3) for cid in range(1, 7)}
    result = simulate(updates, protocol="paillier", key_bits=BITS, hazmat_allow_weak_key=True)
    assert result.details["key_generation"] == KeyGeneration.DEALER.value


# --------------------------------------------------------------------------- secrets


def _ints(value: Any, seen: set[int]) -> Iterator[int]:
    """Every integer reachable from ``value`` (attributes, containers, arrays), recursively."""
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int) or type(value).__name__ == "mpz":
        yield int(value)
        return
    if isinstance(value, (bytes, bytearray, str, float)):
        return
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            for item in value.ravel().tolist():
                yield from _ints(item, seen)
        return  # fixed-width arrays hold 31-bit residues only
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _ints(k, seen)
            yield from _ints(v, seen)
        return
    if isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _ints(item, seen)
        return
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _ints(getattr(value, f.name), seen)
        return
    state = getattr(value, "__dict__", None)
    if state is not None:
        yield from _ints(state, seen)
    for slot in getattr(type(value), "__slots__", ()):
        if hasattr(value, slot):
            yield from _ints(getattr(value, slot), seen)


def test_no_party_ever_holds_the_factorisation_or_the_exponent() -> None:
    """Snapshot every party's state after every message; none holds p, q, phi or d."""
    committee = {pid: IdentityKey.generate() for pid in (1, 2, 3, 4, 5)}
    public = {pid: k.public_bytes for pid, k in committee.items()}
    params = KeygenParameters(key_bits=BITS, n_parties=5, threshold=3, hazmat_allow_weak_key=True)
    session = 99
    parties = {
        pid: KeygenParty(params, session=session, party_id=pid, committee=public, identity=k)
        for pid, k in committee.items()
    }
    stored: set[int] = set()
    factors: dict[int, tuple[int, int]] = {}

    def snapshot(pid: int) -> None:
        stored.update(x for x in _ints(parties[pid], set()) if x.bit_length() > 64)
        # the test (not the protocol) sums the members' shares of the chosen candidate
        attempts = [p._attempt for p in parties.values()]
        if all(a.chosen is not None and a.p_shares for a in attempts):
            c, n = attempts[0].chosen  # type: ignore[misc]
            p = sum(a.p_shares[c] for a in attempts)
            q = sum(a.q_shares[c] for a in attempts)
            factors[n] = (p, q)

    for pid, party in parties.items():
        original = party.handle

        def watched(
            message: KeygenMessage, *, _pid: int = pid, _handle: Any = original
        ) -> list[KeygenMessage]:
            out: list[KeygenMessage] = _handle(message)
            snapshot(_pid)
            return out

        party.handle = watched  # type: ignore[method-assign]
    KeygenRunner(params, parties, KeygenServer(params, session=session, committee=public)).run()
    pk = parties[1].public_key
    n = pk.n
    p, q = factors[n]
    assert p * q == n and gmpy2.is_prime(p) and gmpy2.is_prime(q)
    phi = (p - 1) * (q - 1)
    shares = {party.index: party.key_share.secret for party in parties.values()}
    lam = integer_lagrange([1, 2, 3], math.factorial(5))
    d = sum(lam[i] * shares[i] for i in (1, 2, 3)) // math.factorial(5)
    assert d % phi == 0 and d % n == 1
    forbidden = {p, q, phi, d, p + q, p - 1, q - 1}
    assert stored, "the walk found no state"
    assert not stored & forbidden
    for x in stored:
        assert math.gcd(x, n) in (1, n), "a stored integer shares a factor with N"
        assert x % phi != 0, "a stored integer is a multiple of phi"


# --------------------------------------------------------------------------- dropouts


def test_a_vanished_member_stalls_with_a_typed_error_naming_it() -> None:
    with pytest.raises(RoundRestartError) as caught:
        generate_distributed_key(
            [1, 2, 3, 4],
            threshold=2,
            key_bits=BITS,
            hazmat_allow_weak_key=True,
            dropouts={KeygenPhase.EXPONENT: [3]},
            restart=False,
        )
    assert caught.value.excluded == frozenset({3})


@pytest.mark.parametrize(
    "phase", [KeygenPhase.HELLO, KeygenPhase.SIEVE_OPEN, KeygenPhase.KEY_SHARES]
)
def test_restart_without_the_vanished_member(phase: KeygenPhase) -> None:
    key = generate_distributed_key(
        [1, 2, 3, 4], threshold=2, key_bits=BITS, hazmat_allow_weak_key=True, dropouts={phase: [2]}
    )
    assert key.stats.restarts == 1
    assert key.committee == {1: 1, 3: 2, 4: 3}
    public = key.public_key
    packing = public.packing(value_bits=8, max_clients=2)
    vector = public.encryptor(packing).encrypt(np.array([200, 3], dtype=np.uint64))
    partials = [partial_decrypt(key.shares[pid], vector) for pid in (4, 1)]
    plain = combine_partial_decryptions(public, vector, partials)
    assert packing.unpack(plain, 2, summands=1).tolist() == [200, 3]


def test_too_few_members_left_is_threshold_not_met() -> None:
    with pytest.raises(ThresholdNotMetError):
        generate_distributed_key(
            [1, 2, 3],
            threshold=2,
            key_bits=BITS,
            hazmat_allow_weak_key=True,
            dropouts={KeygenPhase.MODULUS: [1]},
        )
    with pytest.raises(InvalidParameterError):
        KeygenParameters(key_bits=BITS, n_parties=3, threshold=4, hazmat_allow_weak_key=True)


# --------------------------------------------------------------------------- messages


class _Committee:
    """Three members driven by hand up to their first SIEVE messages."""

    def __init__(self) -> None:
        self.identities = {pid: IdentityKey.generate() for pid in (1, 2, 3)}
        self.public = {pid: k.public_bytes for pid, k in self.identities.items()}
        self.params = KeygenParameters(
            key_bits=BITS, n_parties=3, threshold=2, hazmat_allow_weak_key=True
        )
        self.parties = {
            pid: KeygenParty(
                self.params, session=7, party_id=pid, committee=self.public, identity=k
            )
            for pid, k in self.identities.items()
        }
        hellos = {pid: p.start()[0] for pid, p in self.parties.items()}
        self.hellos = hellos
        self.sieve: dict[int, list[KeygenMessage]] = {pid: [] for pid in self.parties}
        for pid, party in self.parties.items():
            for other, hello in hellos.items():
                if other != pid:
                    self.sieve[pid] += party.handle(hello)

    def shares(self, sender: int, recipient: int) -> KeygenShares:
        (m,) = [
            m
            for m in self.sieve[sender]
            if isinstance(m, KeygenShares) and m.recipient == recipient
        ]
        return m


def test_wire_round_trip_and_strict_decoding() -> None:
    committee = _Committee()
    params = committee.params
    hello = committee.hellos[1]
    shares = committee.shares(1, 2)
    broadcast = KeygenBroadcast(
        session=7,
        sender=1,
        phase=KeygenPhase.SIEVE_OPEN,
        attempt=0,
        payload=b"\x00" * 8,
        signature=b"\x01" * 64,
    )
    for message in (hello, shares, broadcast):
        data = encode_keygen_message(message, params)
        assert decode_keygen_message(data, params) == message
        bad = [
            data[:-1],
            data + b"\x00",
            b"XXXX" + data[4:],
            data[:4] + b"\x09" + data[5:],
            data[:5] + b"\x09" + data[6:],
            data[:10],
        ]
        for corrupted in bad:
            with pytest.raises(MessageError):
                decode_keygen_message(corrupted, params)
    # a pairwise phase in a broadcast, an unknown phase, a broadcast phase in shares
    raw = bytearray(encode_keygen_message(broadcast, params))
    raw[14 + 8] = KeygenPhase.SIEVE.value
    with pytest.raises(MessageError):
        decode_keygen_message(bytes(raw), params)
    raw[14 + 8] = 99
    with pytest.raises(MessageError):
        decode_keygen_message(bytes(raw), params)
    raw = bytearray(encode_keygen_message(shares, params))
    raw[14 + 16] = KeygenPhase.THETA.value
    with pytest.raises(MessageError):
        decode_keygen_message(bytes(raw), params)
    with pytest.raises(MessageError):
        decode_keygen_message("text", params)  # type: ignore[arg-type]
    with pytest.raises(MessageError):
        KeygenShares(
            session=7,
            sender=1,
            recipient=1,
            phase=KeygenPhase.SIEVE,
            attempt=0,
            ciphertext=b"\x00" * 40,
        )
    with pytest.raises(MessageError):
        KeygenHello(session=-1, sender=1, exchange_key=b"\x00" * 32, signature=b"\x00" * 64)


def test_party_refuses_bad_messages_and_changes_no_state() -> None:
    committee = _Committee()
    target = committee.parties[2]
    good = committee.shares(1, 2)
    replace = dataclasses.replace
    cases: list[tuple[KeygenMessage, type[Exception]]] = [
        (replace(good, session=8), ReplayError),
        (replace(good, attempt=1), ReplayError),
        (replace(good, phase=KeygenPhase.MODULUS), StageError),
        (replace(good, sender=9), MessageError),
        (replace(good, recipient=3), MessageError),
        (
            replace(good, ciphertext=good.ciphertext[:-1] + bytes([good.ciphertext[-1] ^ 1])),
            AuthenticationError,
        ),
        # 1's shares for 3, relabelled as for 2: the channel key and AD bind the recipient
        (replace(committee.shares(1, 3), recipient=2), AuthenticationError),
        # 3's shares for 2 claimed to come from 1
        (replace(committee.shares(3, 2), sender=1), AuthenticationError),
        (committee.hellos[1], StageError),
    ]
    for message, error in cases:
        with pytest.raises(error):
            target.handle(message)
    assert target.phase is KeygenPhase.SIEVE and not target._attempt.received
    assert target.handle(good) == []
    with pytest.raises(MessageError):
        target.handle(good)  # a duplicate
    # the other member's genuine shares complete the phase: a signed SIEVE_OPEN follows
    (opened,) = target.handle(committee.shares(3, 2))
    assert isinstance(opened, KeygenBroadcast) and opened.phase is KeygenPhase.SIEVE_OPEN
    forged = replace(opened, payload=bytes(len(opened.payload)))
    first = committee.parties[1]
    first.handle(committee.shares(2, 1))
    first.handle(committee.shares(3, 1))
    assert first.phase is KeygenPhase.SIEVE_OPEN
    with pytest.raises(AuthenticationError):
        first.handle(forged)
    server = KeygenServer(committee.params, session=7, committee=committee.public)
    with pytest.raises(AuthenticationError):
        server.handle(forged)
    with pytest.raises(ReplayError):
        server.handle(replace(opened, session=1))
    assert server.handle(opened) == [opened]


def test_party_refuses_a_committee_it_is_not_in() -> None:
    committee = _Committee()
    with pytest.raises(InvalidParameterError):
        KeygenParty(
            committee.params,
            session=1,
            party_id=4,
            committee=committee.public,
            identity=IdentityKey.generate(),
        )
    with pytest.raises(InvalidParameterError):
        KeygenParty(
            committee.params,
            session=1,
            party_id=1,
            committee=committee.public,
            identity=committee.identities[2],
        )
    with pytest.raises(StageError):
        _ = committee.parties[1].key_share


# --------------------------------------------------------------------------- conformance


class TestDistributedKeyConformance(_DealtConformance):
    """The whole Paillier conformance suite (clients as decryptors, malicious server) on a key
    the 8 decryptors generated themselves."""

    def key(
        self, threat_model: ThreatModel | None = None
    ) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
        threat = self.threat_model if threat_model is None else threat_model
        params = paillier_parameters(self.num_clients, threat, n_decryptors=self.committee_size)
        return _distributed(params.n_decryptors, params.threshold)

    def test_the_key_is_distributed(self) -> None:
        public, shares = self.key()
        assert public.encryption_base is None
        setup = setup_paillier_round(
            self.make_updates(), key=(public, shares), key_bits=BITS, threat_model=self.threat_model
        )
        assert setup.runner.config.randomness is Randomness.STANDARD


# --------------------------------------------------------------------------- real size


@pytest.mark.slow
def test_real_2048_bit_generation() -> None:
    key = generate_distributed_key([1, 2, 3], threshold=2, key_bits=2048)
    public = key.public_key
    assert public.n.bit_length() == 2048
    packing = public.packing(value_bits=32, max_clients=3)
    values = np.array([1, 2**32 - 1, 12345], dtype=np.uint64)
    vector = public.encryptor(packing).encrypt(values)
    partials = [partial_decrypt(key.shares[pid], vector) for pid in (3, 1)]
    plain = combine_partial_decryptions(public, vector, partials)
    assert np.array_equal(packing.unpack(plain, 3, summands=1), values)


# --------------------------------------------------------------------------- recipe and demo


def test_recipe_with_a_distributed_key() -> None:
    from secagg.recipe import SecureAggregator

    rng = np.random.default_rng(5)
    updates = [{"w": rng.normal(size=(3, 2)), "b": rng.normal(size=4)} for _ in range(5)]
    aggregator = SecureAggregator(
        population=5,
        protocol="paillier",
        dp="none",
        key_generation="distributed",
        paillier_committee=4,
        hazmat_paillier_key_bits=BITS,  # INSECURE size, to keep the test fast
    )
    for _ in range(2):  # the committee's key serves every round
        mean = aggregator.mean(updates)
        expected = sum(u["b"] for u in updates) / 5
        assert np.max(np.abs(mean["b"] - expected)) < 1e-6
    assert aggregator._paillier_key[0].encryption_base is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"protocol": "secagg+", "key_generation": "distributed"},
        {"protocol": "paillier", "key_generation": "distributed", "paillier_committee": 2},
        {"protocol": "paillier", "key_generation": "trusted-friend"},
    ],
)
def test_recipe_refuses_contradictory_key_generation(kwargs: dict[str, Any]) -> None:
    from secagg.recipe import SecureAggregator

    with pytest.raises(InvalidParameterError):
        SecureAggregator(population=5, dp="none", **kwargs)


def test_demo_takes_the_key_generation_option() -> None:
    import argparse

    from secagg.demo import _check_args, configure

    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(["--protocol", "paillier", "--key-generation", "distributed"])
    assert args.key_generation == "distributed"
    _check_args(args)
    with pytest.raises(InvalidParameterError, match="--key-generation"):
        _check_args(parser.parse_args(["--key-generation", "distributed"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--protocol", "paillier", "--key-generation", "oracle"])
