"""Keeping a client's round state between Flower messages.

A deployed SuperNode starts a fresh ClientApp process for every message, so the
:class:`~protocols.masking.client.SecAggClient` of a round must be saved into the node's
``Context`` after each stage and restored at the next. The context lives on the
SuperNode (it is never sent to the SuperLink); it holds the round's secrets -- the
ephemeral private keys, the per-round signing key, the graph-seed contribution and the
shares entrusted by peers -- exactly as long as the round runs, and is cleared when the
client finishes.

The client's :class:`~protocols.round_log.RoundLog` is not part of the saved state: the
client consults it only when the round starts (the mod hands it the node's log then), and
a restored client holds none.

Serialisation is pickle with two restrictions: private keys are reduced to their raw
bytes through this module's own constructors, and loading resolves only an explicit
allow-list of classes (the client state machine and the data types it holds), so that a
tampered blob cannot name any other callable.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from protocols.masking.client import SecAggClient
from protocols.round_log import RoundLog
from secagg.errors import MessageError

__all__ = ["dump_client", "load_client"]

_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("protocols.masking.client", "SecAggClient"),
        ("protocols.masking.client", "_Held"),
        ("protocols.masking.client", "ShareKind"),
        ("protocols.masking.config", "Hardening"),
        ("protocols.masking.config", "RoundConfig"),
        ("protocols.masking.graph", "Ring"),
        ("protocols.masking.records", "PeerKeys"),
        ("protocols.masking.records", "SeedEntry"),
        ("protocols.stages", "Stage"),
        # where the previous release defined them (they still import from there)
        ("protocols.masking.messages", "PeerKeys"),
        ("protocols.masking.messages", "SeedEntry"),
        ("protocols.masking.messages", "Stage"),
        ("secagg.primitives.aead", "ShareCipher"),
        ("secagg.primitives.keys", "KeyPair"),
        ("secagg.primitives.prg", "PrgAlgorithm"),
        ("secagg.primitives.shamir", "Share"),
        ("secagg.primitives.signing", "IdentityKey"),
        ("threat_models.model", "ServerClass"),
        ("threat_models.parameters", "GraphKind"),
        ("threat_models.parameters", "ProtocolParameters"),
        ("protocols.flower.state", "_x25519_private"),
        ("protocols.flower.state", "_ed25519_private"),
        ("protocols.flower.state", "_no_round_log"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("builtins", "frozenset"),
        ("builtins", "set"),
    }
)


def _raw(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def _x25519_private(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


def _ed25519_private(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)


def _no_round_log() -> None:
    return None


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, RoundLog):
            return _no_round_log, ()
        if isinstance(obj, X25519PrivateKey):
            return _x25519_private, (_raw(obj),)
        if isinstance(obj, Ed25519PrivateKey):
            return _ed25519_private, (_raw(obj),)
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise MessageError(f"client state refers to {module}.{name}, which is not allowed")
        return super().find_class(module, name)


def dump_client(client: SecAggClient) -> bytes:
    """Serialise a client state machine (its secrets included) for the node's context."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(client)
    return buffer.getvalue()


def load_client(blob: bytes) -> SecAggClient:
    """Restore a client saved by :func:`dump_client`.

    Raises:
        MessageError: the blob does not hold a client state (or names a class outside
            the allow-list).
    """
    try:
        client = _Unpickler(io.BytesIO(blob)).load()
    except MessageError:
        raise
    except Exception as exc:  # any unpickling failure means a corrupt state
        raise MessageError(f"corrupt client state: {exc}") from None
    if not isinstance(client, SecAggClient):
        raise MessageError("the saved state is not a SecAggClient")
    return client
