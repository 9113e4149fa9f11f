"""How protocol messages and model updates travel in Flower ``Message`` records.

A protocol message (:mod:`protocols.masking.messages`, already a strict binary encoding) rides in
``content.array_records["secagg.message"]`` as one ``uint8`` array, so that Flower chunks
large masked vectors like any model array. Small metadata (stage, version, round
announcement) rides in ``content.config_records["secagg"]``. At the masked-input stage
the server also sends the global model (``"arrays"``) and the train configuration
(``"config"``), the names Flower's own strategies use.

Model arrays are flattened in *sorted key order* on both sides, so that the order in
which a transport happens to deliver an ``ArrayRecord``'s entries never matters.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from protocols.masking.codec import MAX_MESSAGE_BYTES
from protocols.masking.messages import Message, decode_message, encode_message
from secagg.errors import EncodingError, MessageError
from secagg.validation import is_int

__all__ = [
    "CONFIG_KEY",
    "MESSAGE_KEY",
    "ARRAYS_KEY",
    "TRAIN_CONFIG_KEY",
    "METRICS_KEY",
    "WIRE_VERSION",
    "HELLO_STAGE",
    "ArrayLayout",
    "RoundAnnouncement",
    "pack_message",
    "unpack_message",
    "flatten_arrays",
    "arrays_digest",
]

CONFIG_KEY = "secagg"
MESSAGE_KEY = "secagg.message"
ARRAYS_KEY = "arrays"
TRAIN_CONFIG_KEY = "config"
METRICS_KEY = "metrics"
#: Version of this Flower envelope (the protocol messages carry their own). Version 2: the
#: protocol's graph-seed stage, and the consistency check against a semi-malicious server.
WIRE_VERSION = 2
#: The stage in which the server learns each node's client id (signed rounds).
HELLO_STAGE = "hello"

F64 = npt.NDArray[np.float64]


def pack_message(message: Message) -> ArrayRecord:
    """A protocol message as an ``ArrayRecord`` holding its bytes."""
    payload = np.frombuffer(encode_message(message), dtype=np.uint8)
    return ArrayRecord({"bytes": Array(payload)})


def unpack_message(content: RecordDict, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """The protocol message carried by ``content``.

    Raises:
        MessageError: no message, or one that does not decode strictly.
    """
    if MESSAGE_KEY not in content.array_records:
        raise MessageError("the Flower message carries no protocol message")
    record = content.array_records[MESSAGE_KEY]
    if list(record.keys()) != ["bytes"]:
        raise MessageError("malformed protocol message record")
    array = record["bytes"].numpy()
    if array.dtype != np.uint8 or array.ndim != 1:
        raise MessageError("the protocol message must be a 1-D uint8 array")
    return decode_message(array.tobytes(), max_bytes=max_bytes)


@dataclass(frozen=True)
class ArrayLayout:
    """Names, shapes and dtypes of a model's arrays, in sorted-name order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]

    @property
    def size(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def same_as(self, other: ArrayLayout) -> bool:
        return self.names == other.names and self.shapes == other.shapes

    def unflatten(
        self, vector: npt.ArrayLike, *, order: Sequence[str] | None = None
    ) -> ArrayRecord:
        """An ``ArrayRecord`` from a flat vector (entries in ``order``, default sorted).

        Raises:
            EncodingError: wrong length.
        """
        v = np.asarray(vector, dtype=np.float64)
        if v.ndim != 1 or v.shape[0] != self.size:
            raise EncodingError(f"expected a vector of length {self.size}, got shape {v.shape}")
        arrays: dict[str, npt.NDArray[Any]] = {}
        offset = 0
        for name, shape, dtype in zip(self.names, self.shapes, self.dtypes):
            count = math.prod(shape)
            part = v[offset : offset + count].reshape(shape)
            offset += count
            kind = np.dtype(dtype)
            arrays[name] = np.rint(part).astype(kind) if kind.kind in "iub" else part.astype(kind)
        names = list(order) if order is not None else list(self.names)
        return ArrayRecord({name: Array(np.ascontiguousarray(arrays[name])) for name in names})


def _numpy(record: ArrayRecord) -> dict[str, npt.NDArray[Any]]:
    return {name: record[name].numpy() for name in record.keys()}


def flatten_arrays(record: ArrayRecord) -> tuple[F64, ArrayLayout]:
    """All arrays of ``record`` as one float64 vector, in sorted-name order.

    Raises:
        EncodingError: non-numeric or non-finite entries.
    """
    arrays = _numpy(record)
    names = tuple(sorted(arrays))
    parts: list[F64] = []
    shapes: list[tuple[int, ...]] = []
    dtypes: list[str] = []
    for name in names:
        array = arrays[name]
        if array.dtype.kind not in "fiub":
            raise EncodingError(f"array {name!r} is not numeric ({array.dtype})")
        flat = np.asarray(array, dtype=np.float64).ravel()
        if not np.all(np.isfinite(flat)):
            raise EncodingError(f"array {name!r} contains NaN or infinity")
        parts.append(flat)
        shapes.append(tuple(int(s) for s in array.shape))
        dtypes.append(array.dtype.str)
    vector = np.concatenate(parts) if parts else np.zeros(0)
    return vector, ArrayLayout(names, tuple(shapes), tuple(dtypes))


def arrays_digest(record: ArrayRecord) -> bytes:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes (sorted by name).

    Clients bind it into their signed keys: a server that sends different global models
    to different clients is caught by the peers' signature checks.
    """
    h = hashlib.sha256(b"secagg-fl/flower/arrays/v1")
    arrays = _numpy(record)
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        header = json.dumps([name, array.dtype.str, list(array.shape)]).encode()
        h.update(len(header).to_bytes(4, "big") + header)
        data = array.tobytes()
        h.update(len(data).to_bytes(8, "big") + data)
    return h.digest()


@dataclass(frozen=True)
class RoundAnnouncement:
    """What the server announces with ``RoundStart``: the round's public parameters.

    Each client recomputes everything that follows from its own policy and refuses the
    round if any announced number differs.
    """

    round_id: int
    client_id: int
    cohort: int
    degree: int
    threshold: int
    bits: int
    vector_length: int
    dimension: int
    policy_digest: bytes
    model_digest: bytes
    rotation_seed: bytes = b""

    def to_record(self) -> ConfigRecord:
        return ConfigRecord(
            {
                "round-id": self.round_id.to_bytes(8, "big"),
                "client-id": self.client_id,
                "cohort": self.cohort,
                "degree": self.degree,
                "threshold": self.threshold,
                "bits": self.bits,
                "vector-length": self.vector_length,
                "dimension": self.dimension,
                "policy-digest": self.policy_digest,
                "model-digest": self.model_digest,
                "rotation-seed": self.rotation_seed,
            }
        )

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> RoundAnnouncement:
        """Strict parsing.

        Raises:
            MessageError: a missing or mistyped field.
        """
        int_keys = (
            "client-id",
            "cohort",
            "degree",
            "threshold",
            "bits",
            "vector-length",
            "dimension",
        )
        blob_keys = ("round-id", "policy-digest", "model-digest", "rotation-seed")
        try:
            raw_ints = {k: record[k] for k in int_keys}
            raw_blobs = {k: record[k] for k in blob_keys}
        except KeyError as exc:
            raise MessageError(f"round announcement without {exc}") from None
        ints: dict[str, int] = {}
        for key, value in raw_ints.items():
            if not is_int(value) or value < 0:
                raise MessageError(f"round announcement: {key} must be a non-negative int")
            ints[key] = value
        blobs: dict[str, bytes] = {}
        for key, value in raw_blobs.items():
            if not isinstance(value, bytes):
                raise MessageError(f"round announcement: {key} must be bytes")
            blobs[key] = value
        if (
            len(blobs["round-id"]) != 8
            or len(blobs["policy-digest"]) != 32
            or len(blobs["model-digest"]) != 32
        ):
            raise MessageError("round announcement: malformed round id or digest")
        if len(blobs["rotation-seed"]) not in (0, 32):
            raise MessageError("round announcement: malformed rotation seed")
        return cls(
            round_id=int.from_bytes(blobs["round-id"], "big"),
            client_id=ints["client-id"],
            cohort=ints["cohort"],
            degree=ints["degree"],
            threshold=ints["threshold"],
            bits=ints["bits"],
            vector_length=ints["vector-length"],
            dimension=ints["dimension"],
            policy_digest=blobs["policy-digest"],
            model_digest=blobs["model-digest"],
            rotation_seed=blobs["rotation-seed"],
        )
