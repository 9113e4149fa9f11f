from __future__ import annotations

import json
from pathlib import Path

import pytest

from secagg.errors import AuthenticationError, InvalidParameterError
from secagg.primitives.keys import KeyPair, Purpose, derive_key, derive_pair_key, hkdf_info

VECTORS = json.loads((Path(__file__).parent / "vectors" / "hkdf.json").read_text())


@pytest.mark.parametrize("vec", VECTORS)
def test_hkdf_info_layout_and_key_known_answers(vec: dict) -> None:
    info = hkdf_info(
        Purpose(vec["purpose"]), round_id=vec["round_id"], id_a=vec["id_a"], id_b=vec["id_b"]
    )
    assert info.hex() == vec["info"]
    assert derive_key(bytes.fromhex(vec["shared_secret"]), info).hex() == vec["key"]


def test_both_ends_derive_the_same_key() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    for purpose in Purpose:
        k_ab = derive_pair_key(
            a, b.public_bytes, purpose=purpose, round_id=9, self_id=4, peer_id=70
        )
        k_ba = derive_pair_key(
            b, a.public_bytes, purpose=purpose, round_id=9, self_id=70, peer_id=4
        )
        assert k_ab == k_ba and len(k_ab) == 32


def test_domain_separation() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()

    def key(
        purpose: Purpose = Purpose.MASK_SEED, round_id: int = 1, pair: tuple[int, int] = (1, 2)
    ) -> bytes:
        return derive_pair_key(
            a, b.public_bytes, purpose=purpose, round_id=round_id, self_id=pair[0], peer_id=pair[1]
        )

    keys = {
        key(),
        key(purpose=Purpose.SHARE_ENCRYPTION),
        key(round_id=2),
        key(pair=(1, 3)),
        key(pair=(3, 2)),
    }
    assert len(keys) == 5


def test_private_key_round_trip_reproduces_the_agreement() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    rebuilt = KeyPair.from_private_bytes(a.private_bytes())
    assert rebuilt.public_bytes == a.public_bytes
    assert rebuilt.exchange(b.public_bytes) == a.exchange(b.public_bytes)


@pytest.mark.parametrize("bad", [bytes(32), b"\x01" + bytes(31), b"short"])
def test_malformed_or_small_order_public_keys_are_rejected(bad: bytes) -> None:
    with pytest.raises(AuthenticationError):
        KeyPair.generate().exchange(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"round_id": 1, "id_a": 1, "id_b": 1},
        {"round_id": -1, "id_a": 1, "id_b": 2},
        {"round_id": 1, "id_a": 0, "id_b": 2},
        {"round_id": 1, "id_a": 1, "id_b": 2**63},
    ],
)
def test_bad_info_parameters(kwargs: dict) -> None:
    with pytest.raises(InvalidParameterError):
        hkdf_info(Purpose.MASK_SEED, **kwargs)
