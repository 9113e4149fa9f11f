"""Golden wire bytes of the Paillier round codec and the key-generation codec.

Every wire message type is built from fixed field values (no randomness), encoded, and its
hex compared with a literal recorded here; decoding the literal must give the message back.
A change of the bytes is therefore a visible decision, never an accident. The rule: change
a literal only together with the codec's version: ``WIRE_VERSION`` of
``protocols.paillier.messages`` for the ``"SAPM"`` round messages, of
``protocols.paillier.keygen_messages`` for the ``"SAPK"`` key-generation messages (the
encrypted vector inside an upload carries the ``"SAPV"`` version of
``secagg.primitives.packing``).
"""

from __future__ import annotations

import pytest
from phe import paillier as phe_paillier

from protocols.paillier.config import PaillierRoundConfig
from protocols.paillier.keygen_messages import MAGIC as KEYGEN_MAGIC
from protocols.paillier.keygen_messages import WIRE_VERSION as KEYGEN_WIRE_VERSION
from protocols.paillier.keygen_messages import (
    KeygenBroadcast,
    KeygenHello,
    KeygenMessage,
    KeygenPhase,
    KeygenShares,
    decode_keygen_message,
    encode_keygen_message,
)
from protocols.paillier.messages import (
    MAGIC,
    WIRE_VERSION,
    DecryptionRequest,
    DecryptorNonce,
    NonceRequest,
    PaillierMessage,
    PartialDecryptionMessage,
    Upload,
    UploadRequest,
    decode_message,
    encode_message,
)
from secagg.primitives.distributed_paillier import KeygenParameters
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.paillier import EncryptedVector, PlaintextProof, Randomness
from secagg.primitives.threshold_paillier import (
    DecryptionProof,
    PartialDecryption,
    ThresholdPublicKey,
)

# a fixed (and deliberately tiny, INSECURE) modulus: the product of the Mersenne primes
# 2^127 - 1 and 2^107 - 1, so that the key and every width derived from it are constants
MODULUS = ((1 << 127) - 1) * ((1 << 107) - 1)
CIPHERTEXT = (1 << 400) + 12345  # a unit modulo MODULUS^2
SECOND_CIPHERTEXT = (1 << 401) + 777


def _config() -> PaillierRoundConfig:
    key = ThresholdPublicKey(
        paillier=phe_paillier.PaillierPublicKey(MODULUS),
        n_decryptors=2,
        threshold=2,
        verification_base=4,
        verification_keys=(9, 25),
        encryption_base=None,
    )
    encoder = FixedPointEncoder(bits=16, lo=-1.0, hi=1.0, max_clients=4)
    return PaillierRoundConfig(
        round_id=7,
        public_key=key,
        encoder=encoder,
        packing=key.packing_for(encoder),
        length=3,
        min_aggregate_size=2,
        roster={1: bytes([0x11]) * 32, 2: bytes([0x22]) * 32},
        randomness=Randomness.STANDARD,
    )


def _paillier_messages(config: PaillierRoundConfig) -> dict[str, PaillierMessage]:
    signed_nonce = DecryptorNonce(
        round_id=7, party_id=1, nonce=bytes(range(32)), signature=bytes([0xA5]) * 64
    )
    unsigned_nonce = DecryptorNonce(round_id=7, party_id=2, nonce=bytes(range(32, 64)))
    vector = EncryptedVector(
        key_id=config.public_key.ciphertext_key_id, length=3, ciphertexts=(CIPHERTEXT,)
    )
    return {
        "nonce_request": NonceRequest(round_id=7, recipient=1),
        "decryptor_nonce": signed_nonce,
        "upload_request": UploadRequest(
            round_id=7, recipient=2, nonces=(signed_nonce, unsigned_nonce)
        ),
        "upload": Upload(
            round_id=7,
            client_id=2,
            vector=vector,
            context=bytes([0x33]) * 32,
            signature=bytes([0x44]) * 64,
            proof=PlaintextProof(
                challenge=0x0102030405060708090A0B0C0D0E0F10, response=12345, response_unit=67
            ),
        ),
        "upload_unsigned": Upload(
            round_id=7, client_id=1, vector=vector, context=bytes([0x55]) * 32
        ),
        "decryption_request": DecryptionRequest(round_id=7, recipient=1, contributors=(1, 2)),
        "partial_decryption": PartialDecryptionMessage(
            round_id=7,
            partial=PartialDecryption(
                index=1,
                values=(SECOND_CIPHERTEXT,),
                proof=DecryptionProof(challenge=(1 << 255) + 3, response=987654321),
            ),
        ),
        "partial_decryption_unproven": PartialDecryptionMessage(
            round_id=7, partial=PartialDecryption(index=2, values=(CIPHERTEXT,), proof=None)
        ),
    }


def _keygen_messages() -> dict[str, KeygenMessage]:
    return {
        "hello": KeygenHello(
            session=9, sender=1, exchange_key=bytes([0x01]) * 32, signature=bytes([0x02]) * 64
        ),
        "shares": KeygenShares(
            session=9,
            sender=1,
            recipient=2,
            phase=KeygenPhase.SIEVE,
            attempt=3,
            ciphertext=bytes(range(40)),
        ),
        "broadcast": KeygenBroadcast(
            session=9,
            sender=2,
            phase=KeygenPhase.SIEVE_OPEN,
            attempt=3,
            payload=bytes([0x05]) * 12,
            signature=bytes([0x06]) * 64,
        ),
    }


def _keygen_parameters() -> KeygenParameters:
    return KeygenParameters(key_bits=512, n_parties=3, threshold=2, hazmat_allow_weak_key=True)


PAILLIER_GOLDEN: dict[str, str] = {
    "nonce_request": "5341504d020500000000000000070000000000000001",
    "decryptor_nonce": (
        "5341504d020600000000000000070000000000000001000102030405060708090a0b0c0d0e0f1011"
        "12131415161718191a1b1c1d1e1f40a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5"
        "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5"
    ),
    "upload_request": (
        "5341504d020400000000000000070000000000000002000000020000000000000001000102030405"
        "060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f40a5a5a5a5a5a5a5a5a5a5a5a5a5"
        "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5"
        "a5a5a5a5a5a5a5a5a5a5a50000000000000002202122232425262728292a2b2c2d2e2f3031323334"
        "35363738393a3b3c3d3e3f00"
    ),
    "upload": (
        "5341504d020100000000000000070000000000000002333333333333333333333333333333333333"
        "33333333333333333333333333334044444444444444444444444444444444444444444444444444"
        "44444444444444444444444444444444444444444444444444444444444444444444444444444401"
        "0102030405060708090a0b0c0d0e0f10000000000000000000000000000000000000000000000000"
        "00000000303900000000000000000000000000000000000000000000000000000000004353415056"
        "01cff8db4d08c2e820d15f86bb9bbd16e15087131ec11d000d325e2542bf18e72800000000000000"
        "03000000010000000000000000010000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000003039"
    ),
    "upload_unsigned": (
        "5341504d020100000000000000070000000000000001555555555555555555555555555555555555"
        "555555555555555555555555555500005341505601cff8db4d08c2e820d15f86bb9bbd16e1508713"
        "1ec11d000d325e2542bf18e728000000000000000300000001000000000000000001000000000000"
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "00003039"
    ),
    "decryption_request": (
        "5341504d0202000000000000000700000000000000010000000200000000000000010000000000000002"
    ),
    "partial_decryption": (
        "5341504d020300000000000000070000000100000001000000000000000002000000000000000000"
        "00000000000000000000000000000000000000000000000000000000000000000000000000000003"
        "09018000000000000000000000000000000000000000000000000000000000000003000000000000"
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "00000000000000000000000000000000003ade68b1"
    ),
    "partial_decryption_unproven": (
        "5341504d020300000000000000070000000200000001000000000000000001000000000000000000"
        "00000000000000000000000000000000000000000000000000000000000000000000000000000030"
        "3900"
    ),
}

KEYGEN_GOLDEN: dict[str, str] = {
    "hello": (
        "5341504b010100000000000000090000000000000001010101010101010101010101010101010101"
        "01010101010101010101010101010202020202020202020202020202020202020202020202020202"
        "0202020202020202020202020202020202020202020202020202020202020202020202020202"
    ),
    "shares": (
        "5341504b010200000000000000090000000000000001000000000000000202000000030000002800"
        "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627"
    ),
    "broadcast": (
        "5341504b01030000000000000009000000000000000203000000030000000c050505050505050505"
        "05050506060606060606060606060606060606060606060606060606060606060606060606060606"
        "060606060606060606060606060606060606060606060606060606"
    ),
}


def test_every_message_type_has_a_golden_encoding() -> None:
    config = _config()
    kinds = {type(m) for m in _paillier_messages(config).values()}
    assert kinds == {
        NonceRequest,
        DecryptorNonce,
        UploadRequest,
        Upload,
        DecryptionRequest,
        PartialDecryptionMessage,
    }
    assert {type(m) for m in _keygen_messages().values()} == {
        KeygenHello,
        KeygenShares,
        KeygenBroadcast,
    }
    assert set(PAILLIER_GOLDEN) == set(_paillier_messages(config))
    assert set(KEYGEN_GOLDEN) == set(_keygen_messages())


@pytest.mark.parametrize("name", sorted(PAILLIER_GOLDEN))
def test_paillier_message_golden_bytes(name: str) -> None:
    config = _config()
    message = _paillier_messages(config)[name]
    golden = bytes.fromhex(PAILLIER_GOLDEN[name])
    assert golden[:4] == MAGIC and golden[4] == WIRE_VERSION
    assert encode_message(message, config).hex() == PAILLIER_GOLDEN[name]
    assert decode_message(golden, config) == message


@pytest.mark.parametrize("name", sorted(KEYGEN_GOLDEN))
def test_keygen_message_golden_bytes(name: str) -> None:
    params = _keygen_parameters()
    message = _keygen_messages()[name]
    golden = bytes.fromhex(KEYGEN_GOLDEN[name])
    assert golden[:4] == KEYGEN_MAGIC and golden[4] == KEYGEN_WIRE_VERSION
    assert encode_keygen_message(message, params).hex() == KEYGEN_GOLDEN[name]
    assert decode_keygen_message(golden, params) == message
