"""Regenerate the known-answer vectors in this folder.

Deliberately independent of the library: it uses only the standard library (``hmac``,
``hashlib``, big-int arithmetic) and the raw AES/ChaCha20 ciphers of ``cryptography``,
re-deriving every layout from the specification in the docstrings of ``secagg.primitives.prg``,
``secagg.primitives.keys``, ``secagg.primitives.transcript`` and ``secagg.primitives.shamir``. Run
from the repository root:

    .venv/bin/python tests/secagg/vectors/generate.py
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HERE = Path(__file__).resolve().parent
P = (1 << 256) + 297


def aes_ctr_keystream(key: bytes, iv: bytes, n: int) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return enc.update(bytes(n))


def chacha_keystream(key: bytes, nonce16: bytes, n: int) -> bytes:
    enc = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor()
    return enc.update(bytes(n))


PRG_VERSION = 2  # secagg.primitives.prg.MASK_PRG_VERSION: 4-byte words for b <= 32


def prg_vectors() -> list[dict[str, object]]:
    """Element i: the little-endian word of ``word`` bytes at keystream ``[word i, word (i+1))``
    mod 2^bits, ``word = 4`` for ``bits <= 32`` and 8 above (output definition version 2)."""
    out = []
    for seed_hex, bits, algo in [
        ("00" * 32, 16, "aes-256-ctr"),
        (bytes(range(32)).hex(), 32, "aes-256-ctr"),
        (bytes(range(32)).hex(), 33, "aes-256-ctr"),
        (bytes(range(100, 132)).hex(), 62, "aes-256-ctr"),
        (bytes(range(32)).hex(), 20, "chacha20"),
        (bytes(range(7, 39)).hex(), 48, "chacha20"),
    ]:
        seed = bytes.fromhex(seed_hex)
        word = 4 if bits <= 32 else 8
        n_elems, offset = 8, 1001
        total = (offset + n_elems) * word
        stream = (
            aes_ctr_keystream(seed, bytes(16), total)
            if algo == "aes-256-ctr"
            else chacha_keystream(seed, bytes(16), total)
        )

        def element(i: int, stream: bytes = stream, word: int = word, bits: int = bits) -> int:
            return int.from_bytes(stream[i * word : (i + 1) * word], "little") % (1 << bits)

        out.append(
            {
                "version": PRG_VERSION,
                "seed": seed_hex,
                "bits": bits,
                "algorithm": algo,
                "first": [element(i) for i in range(n_elems)],
                "offset": offset,
                "at_offset": [element(offset + i) for i in range(n_elems)],
            }
        )
    return out


def canonical_field(tag: bytes, payload: bytes) -> bytes:
    return tag + struct.pack(">I", len(payload)) + payload


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def hkdf_vectors() -> list[dict[str, object]]:
    out = []
    for purpose, round_id, a, b in [
        ("pairwise-mask-seed", 7, 3, 11),
        ("share-encryption", 7, 11, 3),
        ("pairwise-mask-seed", 2**40 + 5, 1, 2**62),
    ]:
        lo, hi = sorted((a, b))
        info = (
            canonical_field(b"S", b"secagg-fl")
            + canonical_field(b"U", struct.pack(">Q", 1))
            + canonical_field(b"S", purpose.encode())
            + canonical_field(b"U", struct.pack(">Q", round_id))
            + canonical_field(b"U", struct.pack(">Q", lo))
            + canonical_field(b"U", struct.pack(">Q", hi))
        )
        shared = hashlib.sha256(f"shared-{purpose}-{round_id}".encode()).digest()
        key = hkdf_sha256(shared, b"secagg-fl/hkdf-salt/v1", info, 32)
        out.append(
            {
                "purpose": purpose,
                "round_id": round_id,
                "id_a": a,
                "id_b": b,
                "info": info.hex(),
                "shared_secret": shared.hex(),
                "key": key.hex(),
            }
        )
    return out


def shamir_vectors() -> list[dict[str, object]]:
    out = []
    for secret_hex, coeffs, indices in [
        ("00" * 31 + "2a", [5, 7], [1, 2, 3, 4]),
        ("ff" * 32, [P - 1, 2**255, 12345], [1, 9, 2**63, 2**64 - 1]),
        (bytes(range(32)).hex(), [], [17, 18]),
    ]:
        s = int(secret_hex, 16)
        poly = [s] + coeffs

        def f(x: int, poly: list[int] = poly) -> int:
            return sum(c * pow(x, k, P) for k, c in enumerate(poly)) % P

        out.append(
            {
                "secret": secret_hex,
                "coefficients": [str(c) for c in coeffs],
                "indices": [str(i) for i in indices],
                "values": [str(f(i)) for i in indices],
            }
        )
    return out


def main() -> None:
    (HERE / "prg.json").write_text(json.dumps(prg_vectors(), indent=1) + "\n")
    (HERE / "hkdf.json").write_text(json.dumps(hkdf_vectors(), indent=1) + "\n")
    (HERE / "shamir.json").write_text(json.dumps(shamir_vectors(), indent=1) + "\n")


if __name__ == "__main__":
    main()
