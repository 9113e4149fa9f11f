"""Partial decryption on several processes: same values, same proofs, typed refusals."""

from __future__ import annotations

import secrets
import threading
from typing import cast

import numpy as np
import pytest

from protocols.paillier import PaillierDecryptor
from protocols.paillier.driver import run_round, setup_paillier_round
from secagg.errors import InvalidParameterError
from secagg.primitives.paillier import EncryptedVector
from secagg.primitives.threshold_paillier import (
    KeyShare,
    ThresholdPublicKey,
    combine_partial_decryptions,
    deal_threshold_key,
    decryption_workers,
    partial_decrypt,
    verify_partial_decryption,
)

Dealt = tuple[ThresholdPublicKey, tuple[KeyShare, ...]]


@pytest.fixture(scope="module")
def dealt() -> Dealt:
    # INSECURE 512-bit modulus, for speed only
    return deal_threshold_key(n_decryptors=4, threshold=3, key_bits=512, hazmat_allow_weak_key=True)


def _vector(pk: ThresholdPublicKey, plaintexts: list[int]) -> EncryptedVector:
    return EncryptedVector(
        key_id=pk.ciphertext_key_id,
        length=len(plaintexts),
        ciphertexts=tuple(int(pk.paillier.raw_encrypt(m)) for m in plaintexts),
    )


@pytest.mark.parametrize("bad", [0, -1, True, 1.0, 2.5, "all", "AUTO", None, b"auto"])
def test_workers_refuses_anything_but_a_positive_int_or_auto(bad: object) -> None:
    with pytest.raises(InvalidParameterError, match="workers"):
        decryption_workers(bad)


def test_workers_auto_is_the_usable_cpus() -> None:
    assert decryption_workers(1) == 1
    assert decryption_workers(3) == 3
    assert decryption_workers("auto") >= 1


def test_parallel_partial_decryption_is_bit_identical(dealt: Dealt) -> None:
    pk, shares = dealt
    plaintexts = [secrets.randbelow(pk.n) for _ in range(11)]
    vector = _vector(pk, plaintexts)
    context = b"test/parallel"
    sequential = [partial_decrypt(s, vector, context=context) for s in shares[:3]]
    parallel = [partial_decrypt(s, vector, context=context, workers=2) for s in shares[:3]]
    for one, other in zip(sequential, parallel, strict=True):
        assert one.values == other.values
        verify_partial_decryption(pk, vector, other, context=context)
    assert list(combine_partial_decryptions(pk, vector, parallel, context=context)) == plaintexts
    # more workers than ciphertexts: runs in this process, same values
    short = _vector(pk, plaintexts[:1])
    assert (
        partial_decrypt(shares[0], short, prove=False, workers=4).values
        == partial_decrypt(shares[0], short, prove=False).values
    )


def test_partial_decrypt_refuses_bad_workers_before_any_work(dealt: Dealt) -> None:
    pk, shares = dealt
    with pytest.raises(InvalidParameterError, match="workers"):
        partial_decrypt(shares[0], _vector(pk, [1, 2]), workers=0)


def test_decryptor_and_driver_validate_workers(dealt: Dealt) -> None:
    rng = np.random.default_rng(5)
    updates = {i: rng.uniform(-1.0, 1.0, 8) for i in range(4)}
    with pytest.raises(InvalidParameterError, match="workers"):
        run_round(updates, decryption_workers=0, key_bits=512, hazmat_allow_weak_key=True)
    setup = setup_paillier_round(updates, key=dealt)
    party = next(p for p in setup.runner.parties.values() if p.decryptor is not None)
    assert party.decryptor is not None
    decryptor = party.decryptor
    share = next(s for s in setup.shares if s.index == decryptor.index)
    with pytest.raises(InvalidParameterError, match="workers"):
        PaillierDecryptor(decryptor.config, share, workers=cast(int, "many"))


def test_round_with_parallel_decryptors_sums_exactly(dealt: Dealt) -> None:
    rng = np.random.default_rng(7)
    updates = {i: rng.uniform(-1.0, 1.0, 300) for i in range(4)}
    outcome = run_round(updates, key=dealt, seed=1, decryption_workers=2)
    reference = run_round(updates, key=dealt, seed=1)
    assert np.array_equal(outcome.aggregate, reference.aggregate)
    expected = np.sum(list(updates.values()), axis=0)
    assert np.max(np.abs(outcome.aggregate - expected)) < 1e-3


def test_workers_started_beside_other_threads_give_the_same_values(dealt: Dealt) -> None:
    # another thread alive: the workers come from a fork server instead of a fork
    pk, shares = dealt
    vector = _vector(pk, [secrets.randbelow(pk.n) for _ in range(6)])
    release = threading.Event()
    waiter = threading.Thread(target=release.wait)
    waiter.start()
    try:
        parallel = partial_decrypt(shares[1], vector, prove=False, workers=2)
    finally:
        release.set()
        waiter.join()
    assert parallel.values == partial_decrypt(shares[1], vector, prove=False).values


def test_more_workers_than_work_starts_no_idle_processes(dealt: Dealt) -> None:
    pk, shares = dealt
    vector = _vector(pk, [secrets.randbelow(pk.n) for _ in range(6)])
    # at most one process per two ciphertexts: 3 here, not 10,000
    many = partial_decrypt(shares[2], vector, prove=False, workers=10_000)
    assert many.values == partial_decrypt(shares[2], vector, prove=False).values
