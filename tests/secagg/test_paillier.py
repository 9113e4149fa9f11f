"""Packed Paillier encryption: packing layout, encryption modes, aggregation, wire format.

Golden values come from ``phe`` itself: its private key decrypts what we encrypt, and what it
encrypts we aggregate and unpack.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phe import paillier as phe_paillier

from secagg.errors import (
    AuthenticationError,
    CapacityError,
    EncodingError,
    InvalidParameterError,
    MessageError,
)
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.paillier import (
    DEFAULT_KEY_BITS,
    EncryptedVector,
    PackingScheme,
    PaillierAggregator,
    PaillierEncryptor,
    Randomness,
    aggregate,
    decrypt_with_private_key,
    multi_exponent,
    public_key_id,
    random_encryption_base,
    verify_plaintext_knowledge,
)
from secagg.primitives.threshold_paillier import deal_threshold_key

KeyPair = tuple[phe_paillier.PaillierPublicKey, phe_paillier.PaillierPrivateKey]


@pytest.fixture(scope="module")
def keypair() -> KeyPair:
    # 512-bit keys are INSECURE; they keep the tests fast
    public, private = phe_paillier.generate_paillier_keypair(n_length=512)
    return public, private


@pytest.fixture(scope="module")
def base(keypair: KeyPair) -> int:
    return random_encryption_base(keypair[0])


def _ring_vectors(count: int, d: int, bits: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 1 << bits, d, dtype=np.uint64) for _ in range(count)]


# ----------------------------------------------------------------------------- packing


def test_packing_layout_headroom_and_density() -> None:
    p = PackingScheme(value_bits=16, max_clients=1000, plaintext_bits=2047)
    assert p.headroom_bits == 10  # 2^10 = 1024 >= 1000 > 512
    assert p.slot_bits == 26
    assert p.slots == 2047 // 26
    assert 1000 * ((1 << 16) - 1) <= (1 << p.slot_bits) - 1
    # the slot is as narrow as the worst-case sum allows, never narrower
    for clients in (1, 2, 3, 1024, 1025, 1028, 5000):
        q = PackingScheme(value_bits=8, max_clients=clients, plaintext_bits=100)
        assert clients * 255 < 1 << q.slot_bits
        assert clients * 255 >= 1 << (q.slot_bits - 1)
        assert q.slot_bits <= 8 + (clients - 1).bit_length()
    assert p.num_ciphertexts(10_000) == -(-10_000 // p.slots)


def test_packing_for_fixed_point_encoder_needs_no_extra_headroom(keypair: KeyPair) -> None:
    public, _ = keypair
    # 16-bit quantisation for 1000 clients: the encoder's ring already has the headroom
    enc16 = FixedPointEncoder.symmetric(1.0, bits=26, max_clients=1000, levels=(1 << 16) - 1)
    p = PackingScheme.for_encoder(public, enc16)
    assert p.value_bound == (1 << 16) - 1
    assert p.slot_bits == 26 and p.headroom_bits == 10
    assert p.slots == (public.n.bit_length() - 1) // 26
    default = FixedPointEncoder.symmetric(1.0, bits=20, max_clients=5)
    assert PackingScheme.for_encoder(public, default).slot_bits == 20
    # a generic ring encoder (values anywhere in Z_(2^b)) needs ceil(log2(max_clients)) bits
    assert PackingScheme.for_key(public, value_bits=20, max_clients=5).slot_bits == 23
    with pytest.raises(EncodingError):
        p.pack(np.array([1 << 16], dtype=np.uint64))
    with pytest.raises(InvalidParameterError):
        PackingScheme(value_bits=8, max_clients=2, plaintext_bits=100, value_bound=256)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"value_bits": 0, "max_clients": 5, "plaintext_bits": 100}, InvalidParameterError),
        ({"value_bits": 63, "max_clients": 5, "plaintext_bits": 100}, InvalidParameterError),
        ({"value_bits": 16, "max_clients": 0, "plaintext_bits": 100}, InvalidParameterError),
        ({"value_bits": 16, "max_clients": True, "plaintext_bits": 100}, InvalidParameterError),
        ({"value_bits": 60, "max_clients": 100, "plaintext_bits": 1000}, CapacityError),
        ({"value_bits": 16, "max_clients": 1000, "plaintext_bits": 20}, CapacityError),
    ],
)
def test_packing_rejects_bad_configuration(kwargs: dict[str, int], error: type[Exception]) -> None:
    with pytest.raises(error):
        PackingScheme(**kwargs)


@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(1, 40),
    clients=st.integers(1, 5000),
    d=st.integers(1, 200),
    seed=st.integers(0, 2**32 - 1),
)
def test_pack_unpack_roundtrip_and_slot_sums(bits: int, clients: int, d: int, seed: int) -> None:
    p = PackingScheme(value_bits=bits, max_clients=clients, plaintext_bits=509)
    rng = np.random.default_rng(seed)
    n_sum = min(clients, 4)
    vecs = [rng.integers(0, 1 << bits, d, dtype=np.uint64) for _ in range(n_sum)]
    vecs[0][0] = (1 << bits) - 1  # the extreme value must survive too
    summed_plain = [sum(col) for col in zip(*(p.pack(v) for v in vecs), strict=True)]
    assert all(m.bit_length() <= p.slots * p.slot_bits for m in summed_plain)
    expected = np.zeros(d, dtype=np.uint64)
    for v in vecs:
        expected = (expected + v) & np.uint64((1 << bits) - 1)
    np.testing.assert_array_equal(p.unpack(summed_plain, d, summands=n_sum), expected)


def test_full_cohort_of_maximal_values_never_carries() -> None:
    p = PackingScheme(value_bits=12, max_clients=37, plaintext_bits=509)
    top = np.full(3 * p.slots + 1, (1 << 12) - 1, dtype=np.uint64)
    total = [m * 37 for m in p.pack(top)]
    # integer sum 37 * 4095 fits in each slot; reduced mod 2^12 it is -37 mod 4096
    np.testing.assert_array_equal(
        p.unpack(total, top.size, summands=37), np.full(top.size, (-37) % 4096)
    )


def test_pack_rejects_out_of_ring_values() -> None:
    p = PackingScheme(value_bits=8, max_clients=4, plaintext_bits=200)
    with pytest.raises(EncodingError):
        p.pack(np.array([256], dtype=np.uint64))
    with pytest.raises(EncodingError):
        p.pack(np.array([-1, 3]))
    with pytest.raises(EncodingError):
        p.pack(np.array([1.5, 2.0]))
    with pytest.raises(EncodingError):
        p.pack(np.zeros((2, 2), dtype=np.uint64))
    with pytest.raises(EncodingError):
        p.pack(np.zeros(0, dtype=np.uint64))


def test_unpack_detects_overfull_slots_and_capacity() -> None:
    p = PackingScheme(value_bits=8, max_clients=4, plaintext_bits=200)
    packed = p.pack(np.full(5, 255, dtype=np.uint64))
    with pytest.raises(EncodingError):  # a single summand cannot exceed 255 per slot
        p.unpack([m * 2 for m in packed], 5, summands=1)
    with pytest.raises(CapacityError):
        p.unpack(packed, 5, summands=5)
    with pytest.raises(EncodingError):
        p.unpack([1 << (p.slots * p.slot_bits)], 5, summands=1)
    with pytest.raises(EncodingError):  # padding slots must stay zero
        p.unpack([packed[0] + (1 << (p.slot_bits * 5))], 5, summands=2)


# ----------------------------------------------------------------------------- encryption


@pytest.mark.parametrize("randomness", list(Randomness))
def test_every_randomness_mode_decrypts_with_phe(
    keypair: KeyPair, base: int, randomness: Randomness
) -> None:
    public, private = keypair
    packing = PackingScheme.for_key(public, value_bits=16, max_clients=8)
    enc = PaillierEncryptor(public, packing, randomness=randomness, encryption_base=base)
    xs = _ring_vectors(8, 150, 16, seed=3)
    vectors = [enc.encrypt(x) for x in xs]
    assert len(vectors[0].ciphertexts) == packing.num_ciphertexts(150)
    # phe's own CRT decryption of each ciphertext, unpacked, gives the vector back
    np.testing.assert_array_equal(
        decrypt_with_private_key(private, vectors[0], packing, summands=1), xs[0]
    )
    total = aggregate(public, packing, vectors)
    expected = np.sum(np.stack(xs), axis=0, dtype=np.uint64) & np.uint64(0xFFFF)
    np.testing.assert_array_equal(
        decrypt_with_private_key(private, total, packing, summands=8), expected
    )


def test_encryption_is_randomised(keypair: KeyPair, base: int) -> None:
    public, _ = keypair
    packing = PackingScheme.for_key(public, value_bits=16, max_clients=8)
    x = _ring_vectors(1, 40, 16)[0]
    for randomness in Randomness:
        enc = PaillierEncryptor(public, packing, randomness=randomness, encryption_base=base)
        a, b = enc.encrypt(x), enc.encrypt(x)
        assert set(a.ciphertexts).isdisjoint(b.ciphertexts)


def test_fixed_base_hiding_values_lie_in_the_subgroup_of_h(keypair: KeyPair, base: int) -> None:
    # c / (1 + M n) must be a power of h, an n-th residue: its order divides phi(n)
    public, private = keypair
    packing = PackingScheme.for_key(public, value_bits=16, max_clients=8)
    enc = PaillierEncryptor(public, packing, randomness=Randomness.FIXED_BASE, encryption_base=base)
    n, n2 = public.n, public.nsquare
    lam = (private.p - 1) * (private.q - 1)
    m = 123456789
    c = enc.encrypt_plaintext(m)
    obfuscator = c * pow(1 + m * n, -1, n2) % n2
    assert pow(obfuscator, lam, n2) == 1
    assert obfuscator != 1


def test_phe_ciphertexts_aggregate_and_unpack(keypair: KeyPair) -> None:
    # the reverse direction: phe encrypts packed plaintexts, we multiply and unpack
    public, _ = keypair
    packing = PackingScheme.for_key(public, value_bits=10, max_clients=3)
    xs = _ring_vectors(3, 70, 10, seed=9)
    key_id = public_key_id(public)
    vectors = [
        EncryptedVector(
            key_id=key_id,
            length=70,
            ciphertexts=tuple(public.raw_encrypt(m) for m in packing.pack(x)),
        )
        for x in xs
    ]
    total = aggregate(public, packing, vectors)
    _, private = keypair
    plaintexts = [private.raw_decrypt(c) for c in total.ciphertexts]
    np.testing.assert_array_equal(
        packing.unpack(plaintexts, 70, summands=3), (xs[0] + xs[1] + xs[2]) & np.uint64(1023)
    )


def test_fixed_point_encoder_end_to_end(keypair: KeyPair, base: int) -> None:
    public, private = keypair
    encoder = FixedPointEncoder.symmetric(1.0, bits=20, max_clients=5)
    packing = PackingScheme.for_key(public, value_bits=encoder.bits, max_clients=5)
    enc = PaillierEncryptor(public, packing, encryption_base=base)
    rng = np.random.default_rng(1)
    updates = [rng.uniform(-1, 1, 64) for _ in range(5)]
    total = aggregate(public, packing, [enc.encrypt(encoder.encode(u, rng=rng)) for u in updates])
    decoded = encoder.decode_sum(decrypt_with_private_key(private, total, packing, summands=5), 5)
    assert np.max(np.abs(decoded - np.sum(updates, axis=0))) <= 5 * encoder.quantum


def test_encryptor_argument_checks(keypair: KeyPair, base: int) -> None:
    public, _ = keypair
    packing = PackingScheme.for_key(public, value_bits=16, max_clients=8)
    with pytest.raises(InvalidParameterError):
        PaillierEncryptor(public, packing)  # fixed base without a base
    with pytest.raises(InvalidParameterError):
        PaillierEncryptor(public, packing, encryption_base=1)
    with pytest.raises(InvalidParameterError):
        PaillierEncryptor(public, packing, encryption_base=public.n)  # not a unit
    with pytest.raises(InvalidParameterError):
        PaillierEncryptor(public, packing, randomness="standard", encryption_base=base)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError):
        PaillierEncryptor(public, PackingScheme(value_bits=16, max_clients=8, plaintext_bits=4096))
    with pytest.raises(InvalidParameterError):
        PaillierEncryptor(object(), packing, randomness=Randomness.STANDARD)
    enc = PaillierEncryptor(public, packing, randomness=Randomness.STANDARD)
    with pytest.raises(EncodingError):
        enc.encrypt_plaintext(public.n)
    with pytest.raises(EncodingError):
        enc.encrypt(np.array([1 << 16], dtype=np.uint64))


def test_secure_defaults() -> None:
    assert DEFAULT_KEY_BITS == 3072
    deal = inspect.signature(deal_threshold_key).parameters
    assert deal["key_bits"].default == 3072
    assert deal["hazmat_allow_weak_key"].default is False
    assert (
        inspect.signature(PaillierEncryptor).parameters["randomness"].default
        is Randomness.FIXED_BASE
    )


# ----------------------------------------------------------------------------- aggregation


def test_aggregator_refuses_beyond_headroom_without_changing_state(
    keypair: KeyPair, base: int
) -> None:
    public, private = keypair
    packing = PackingScheme.for_key(public, value_bits=8, max_clients=3)
    enc = PaillierEncryptor(public, packing, encryption_base=base)
    xs = _ring_vectors(4, 30, 8, seed=5)
    agg = PaillierAggregator(public, packing, 30)
    for x in xs[:3]:
        agg.add(enc.encrypt(x))
    before = agg.result()
    with pytest.raises(CapacityError):
        agg.add(enc.encrypt(xs[3]))
    assert agg.count == 3
    assert agg.result() == before
    expected = (xs[0] + xs[1] + xs[2]) & np.uint64(255)
    np.testing.assert_array_equal(
        decrypt_with_private_key(private, before, packing, summands=3), expected
    )


BadVector = Callable[[EncryptedVector, phe_paillier.PaillierPublicKey], EncryptedVector]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v, pk: EncryptedVector(b"\x00" * 32, v.length, v.ciphertexts),
        lambda v, pk: EncryptedVector(v.key_id, v.length + 1, v.ciphertexts),
        lambda v, pk: EncryptedVector(v.key_id, v.length, v.ciphertexts[:-1]),
        lambda v, pk: EncryptedVector(v.key_id, v.length, (0,) + v.ciphertexts[1:]),
        lambda v, pk: EncryptedVector(v.key_id, v.length, (pk.nsquare,) + v.ciphertexts[1:]),
        lambda v, pk: EncryptedVector(v.key_id, v.length, (pk.n * 7,) + v.ciphertexts[1:]),
        lambda v, pk: EncryptedVector(v.key_id, v.length, (1.0,) + v.ciphertexts[1:]),
    ],
)
def test_aggregator_rejects_malformed_contributions(
    keypair: KeyPair, base: int, tamper: BadVector
) -> None:
    public, _ = keypair
    packing = PackingScheme.for_key(public, value_bits=8, max_clients=3)
    enc = PaillierEncryptor(public, packing, encryption_base=base)
    good = enc.encrypt(_ring_vectors(1, 30, 8)[0])
    agg = PaillierAggregator(public, packing, 30)
    agg.add(good)
    before = agg.result()
    with pytest.raises(MessageError):
        agg.add(tamper(good, public))
    assert agg.count == 1 and agg.result() == before


# ----------------------------------------------------------------------------- wire format


def test_wire_roundtrip_size_and_strict_decoding(keypair: KeyPair, base: int) -> None:
    public, _ = keypair
    packing = PackingScheme.for_key(public, value_bits=16, max_clients=8)
    vec = PaillierEncryptor(public, packing, encryption_base=base).encrypt(
        _ring_vectors(1, 100, 16)[0]
    )
    data = vec.to_bytes(public)
    width = (public.nsquare.bit_length() + 7) // 8
    assert len(data) == vec.wire_size(public) == 49 + len(vec.ciphertexts) * width
    assert EncryptedVector.from_bytes(data, public, packing) == vec
    other, _ = phe_paillier.generate_paillier_keypair(n_length=512)
    bad_ct = bytearray(data)
    bad_ct[49 : 49 + width] = public.n.to_bytes(width, "big")  # shares a factor with n
    bad_version = bytearray(data)
    bad_version[4] = 2
    for blob, key in [
        (data[:-1], public),
        (data + b"\x00", public),
        (b"XXXX" + data[4:], public),
        (bytes(bad_version), public),
        (bytes(bad_ct), public),
        (data[:20], public),
        (data, other),
    ]:
        with pytest.raises(MessageError):
            EncryptedVector.from_bytes(blob, key, packing)


def test_digest_binds_every_ciphertext(keypair: KeyPair, base: int) -> None:
    public, _ = keypair
    packing = PackingScheme.for_key(public, value_bits=16, max_clients=8)
    vec = PaillierEncryptor(public, packing, encryption_base=base).encrypt(
        _ring_vectors(1, 100, 16)[0]
    )
    changed = EncryptedVector(
        vec.key_id, vec.length, vec.ciphertexts[:-1] + (vec.ciphertexts[-1] + 1,)
    )
    assert vec.digest() != changed.digest()
    assert vec.digest() == EncryptedVector(vec.key_id, vec.length, tuple(vec.ciphertexts)).digest()
    assert len(vec.digest()) == 32


def test_random_encryption_base_is_a_quadratic_residue(keypair: KeyPair) -> None:
    public, private = keypair
    g = random_encryption_base(public)
    assert 1 < g < public.n
    assert gmpy2.legendre(g, private.p) == 1 and gmpy2.legendre(g, private.q) == 1
    # h = g^n mod n^2 is an n-th residue: its order divides lambda(n)
    lam = (private.p - 1) * (private.q - 1) // int(gmpy2.gcd(private.p - 1, private.q - 1))
    assert pow(pow(g, public.n, public.nsquare), lam, public.nsquare) == 1
    assert pow(public.n + 2, lam, public.nsquare) != 1
    assert random_encryption_base(public) != g


@settings(max_examples=25, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(1, 2**200), st.integers(0, 2**130)), min_size=1, max_size=40
    )
)
def test_multi_exponent_matches_pow(data: list[tuple[int, int]]) -> None:
    modulus = 2**255 - 19
    bases, exps = [b for b, _ in data], [e for _, e in data]
    expected = 1
    for b, e in data:
        expected = expected * pow(b, e, modulus) % modulus
    assert multi_exponent(bases, exps, modulus) == expected


# ----------------------------------------------------------------------------- plaintext proofs


@pytest.mark.parametrize("randomness", list(Randomness))
def test_plaintext_knowledge_proof(keypair: KeyPair, base: int, randomness: Randomness) -> None:
    public, _ = keypair
    packing = PackingScheme.for_key(public, value_bits=16, max_clients=8)
    enc = PaillierEncryptor(public, packing, randomness=randomness, encryption_base=base)
    xs = _ring_vectors(3, 100, 16, seed=4)
    vec, witness = enc.encrypt_with_witness(xs[0])
    proof = enc.prove_knowledge(vec, witness, context=b"round 1 client 7")
    verify_plaintext_knowledge(public, vec, proof, context=b"round 1 client 7")
    # bound to the context (round and sender): a copied proof fails for another sender
    with pytest.raises(AuthenticationError):
        verify_plaintext_knowledge(public, vec, proof, context=b"round 1 client 8")
    # bound to the ciphertexts
    other, _ = enc.encrypt_with_witness(xs[1])
    with pytest.raises(AuthenticationError):
        verify_plaintext_knowledge(public, other, proof, context=b"round 1 client 7")
    n, n2 = public.n, public.nsquare
    for bad in (
        replace(proof, response=(proof.response + 1) % n),
        replace(proof, response_unit=proof.response_unit * 2 % n),
        replace(proof, challenge=proof.challenge ^ 1),
        replace(proof, response=n),
        replace(proof, response_unit=0),
    ):
        with pytest.raises(AuthenticationError):
            verify_plaintext_knowledge(public, vec, bad, context=b"round 1 client 7")
    assert vec.ciphertexts[0] < n2
    with pytest.raises(InvalidParameterError):
        enc.prove_knowledge(other, replace(witness, secrets=witness.secrets[:-1]), context=b"x")


def test_cancelling_combination_has_no_valid_proof(keypair: KeyPair, base: int) -> None:
    # the attack the proof stops: a colluder submits prod_{h != v} c_h^-1 so that the
    # aggregate decrypts to the victim's vector alone; it cannot open that combination
    public, private = keypair
    packing = PackingScheme.for_key(public, value_bits=16, max_clients=8)
    enc = PaillierEncryptor(public, packing, encryption_base=base)
    xs = _ring_vectors(4, 60, 16, seed=8)
    vecs = [enc.encrypt(x) for x in xs]
    n2 = public.nsquare
    cancel = EncryptedVector(
        vecs[0].key_id,
        60,
        tuple(
            pow(a * b % n2, -1, n2)
            for a, b in zip(vecs[1].ciphertexts, vecs[2].ciphertexts, strict=True)
        ),
    )
    total = aggregate(public, packing, [vecs[0], vecs[1], vecs[2], cancel])
    # positive control: without proofs the "aggregate of 4" is the victim's update
    np.testing.assert_array_equal(
        decrypt_with_private_key(private, total, packing, summands=4), xs[0]
    )
    # the colluder's best effort: a proof for its own honest vector, or a guessed witness
    own, witness = enc.encrypt_with_witness(xs[3])
    for proof in (
        enc.prove_knowledge(own, witness, context=b"colluder"),
        enc.prove_knowledge(cancel, witness, context=b"colluder"),
    ):
        with pytest.raises(AuthenticationError):
            verify_plaintext_knowledge(public, cancel, proof, context=b"colluder")
