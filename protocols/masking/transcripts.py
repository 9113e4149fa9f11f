"""The exact bytes the masking protocols hash and sign.

Every signature and commitment of a SecAgg / SecAgg+ round is over a canonical,
domain-separated encoding (:func:`~secagg.primitives.transcript.canonical`) that starts
with the protocol's name and version and a label naming what is signed:

* ``advertise-keys``: a client's two public keys, bound to the round, the global model, the
  cohort (:func:`cohort_digest`) and its graph-seed commitment (:func:`advertise_transcript`);
* ``graph-seed-commitment``: a client's commitment to its 32 random bytes
  (:func:`seed_commitment`); the hash of every commitment and reveal is the round's
  *execution context* (:func:`execution_context`);
* ``masking-set``: the peers whose masks a client added (:func:`masking_set_transcript`);
* ``consistency-check``: the survivor set (:func:`consistency_transcript`).

The signed advertisement and the masking-set attestation also name the mask PRG's output
definition (``"mask-prg"``, :data:`~secagg.primitives.prg.MASK_PRG_VERSION`): peers that
would expand masks differently refuse each other's signatures instead of summing noise.

The clients build and verify them, the honest server verifies what it relays, and a
scripted malicious server with a stolen identity key can use them to forge valid signatures.
A field left out (``None``) belongs to a check that is switched off for an unhardened
baseline (:class:`~protocols.masking.config.Hardening`).
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Sequence

from protocols.masking.records import SEED_BYTES, SeedEntry
from secagg.primitives.keys import PROTOCOL_NAME, PROTOCOL_VERSION
from secagg.primitives.prg import MASK_PRG_VERSION
from secagg.primitives.transcript import Field, canonical
from secagg.validation import require_bytes

__all__ = [
    "MODEL_HASH_BYTES",
    "cohort_digest",
    "seed_commitment",
    "execution_context",
    "advertise_transcript",
    "consistency_transcript",
    "masking_set_transcript",
]

MODEL_HASH_BYTES = 32
"""The size of the global model's hash that signed keys are bound to."""

_COMMITMENT_PREFIX = canonical(PROTOCOL_NAME, PROTOCOL_VERSION, "graph-seed-commitment")
_ADVERTISE_HEAD = canonical(PROTOCOL_NAME, PROTOCOL_VERSION, "advertise-keys")
_MASKING_SET_HEAD = canonical(PROTOCOL_NAME, PROTOCOL_VERSION, "masking-set")
_CONSISTENCY_HEAD = canonical(PROTOCOL_NAME, PROTOCOL_VERSION, "consistency-check")


def cohort_digest(cohort: Sequence[int]) -> bytes:
    """SHA-256 of the sorted cohort (bound into signed advertisements)."""
    encoded = canonical(PROTOCOL_NAME, PROTOCOL_VERSION, "cohort", tuple(cohort))
    return hashlib.sha256(encoded).digest()


def seed_commitment(*, round_id: int, client_id: int, reveal: bytes) -> bytes:
    """The commitment a client advertises to its 32-byte contribution to the graph seed.

    ``SHA-256(prefix || round_id u64 || client_id u64 || reveal)``: a fixed layout (the
    prefix is a canonical, domain-separated encoding), checked ``n`` times by every client.

    Raises:
        InvalidParameterError: ``reveal`` is not 32 bytes.
    """
    require_bytes("a graph-seed contribution", reveal, size=SEED_BYTES)
    header = struct.pack(">QQ", round_id, client_id)
    return hashlib.sha256(_COMMITMENT_PREFIX + header + reveal).digest()


def execution_context(
    *,
    round_id: int,
    cohort: Sequence[int],
    entries: Sequence[SeedEntry],
    reveals: Sequence[bytes],
) -> bytes:
    """The execution context: SHA-256 of the round id, the cohort, every commitment and reveal.

    It is the graph seed, and every signature made after the keys is bound to it. It is
    fresh in each execution as long as one honest client's reveal is in it (each client
    checks its own), and nobody can steer it: all commitments are fixed before any reveal.
    """
    return hashlib.sha256(
        canonical(
            PROTOCOL_NAME,
            PROTOCOL_VERSION,
            "execution-context",
            round_id,
            tuple(cohort),
            tuple(e.client_id for e in entries),
            b"".join(e.commitment for e in entries),
            b"".join(reveals),
        )
    ).digest()


def advertise_transcript(
    *,
    client_id: int,
    mask_public: bytes,
    share_public: bytes,
    round_id: int | None,
    model_hash: bytes | None,
    cohort: bytes | None = None,
    commitment: bytes | None = None,
) -> bytes:
    """The bytes a client signs over its advertised keys.

    ``round_id`` / ``model_hash`` are left out only when the corresponding hardening is
    switched off (unhardened baselines); ``cohort`` (:func:`cohort_digest`) and
    ``commitment`` (:func:`seed_commitment`) are present in rounds with a graph seed.
    """
    # canonical records concatenate: the fields shared by the round's advertisements are
    # encoded once per round (keyed by every one of them), the peer's own fields each time
    parts = [
        _ADVERTISE_HEAD,
        canonical(client_id, mask_public, share_public, "mask-prg", MASK_PRG_VERSION),
        _advertise_round_fields(round_id, model_hash, cohort),
    ]
    if commitment is not None:
        parts.append(canonical("commitment", commitment))
    return b"".join(parts)


def _advertise_round_fields(
    round_id: int | None, model_hash: bytes | None, cohort: bytes | None
) -> bytes:
    return _optional_fields(("round", round_id), ("model", model_hash), ("cohort", cohort))


def _round_context_fields(round_id: int | None, context: bytes | None) -> bytes:
    return _optional_fields(("round", round_id), ("context", context))


def _optional_fields(*pairs: tuple[str, int | bytes | None]) -> bytes:
    """``canonical(label, value, ...)`` of the pairs whose value is not ``None``.

    A round's transcripts share these fields: exact ints and bytes (what a round holds)
    are encoded once, keyed by every label and value; any other value is encoded (or
    refused) by :func:`canonical` each time.
    """
    if all(type(v) in _CACHEABLE for _, v in pairs):
        return _cached_optional_fields(pairs)
    return _encode_optional_fields(pairs)


def _encode_optional_fields(pairs: tuple[tuple[str, int | bytes | None], ...]) -> bytes:
    fields: list[Field] = []
    for label, value in pairs:
        if value is not None:
            fields += [label, value]
    return canonical(*fields)


_cached_optional_fields = functools.lru_cache(maxsize=256)(_encode_optional_fields)
_CACHEABLE = frozenset({int, bytes, type(None)})


def consistency_transcript(
    *, survivors: Sequence[int], round_id: int | None, context: bytes | None = None
) -> bytes:
    """The bytes a client signs in the consistency check (the sorted survivor set)."""
    return b"".join(
        [
            _CONSISTENCY_HEAD,
            _round_context_fields(round_id, context),
            canonical(tuple(survivors)),
        ]
    )


def masking_set_transcript(
    *, client_id: int, masking_set: Sequence[int], round_id: int | None, context: bytes | None
) -> bytes:
    """The bytes a client signs over its masking set (sorted) when it sends its masked input."""
    return b"".join(
        [
            _MASKING_SET_HEAD,
            canonical(client_id),
            canonical("mask-prg", MASK_PRG_VERSION),
            _round_context_fields(round_id, context),
            canonical(tuple(sorted(masking_set))),
        ]
    )
