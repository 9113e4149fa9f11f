"""Identity keys and the PKI of a Flower deployment against a malicious server.

In the malicious-server variant every client signs its round keys with a long-term
Ed25519 identity key, and checks its neighbours' signatures against public keys it got
from a source the server does not control. In a Flower deployment that source is the
SuperNode's own configuration::

    flower-supernode ... --node-config 'secagg-client-id=3
        secagg-identity="/etc/secagg/identity-3.key" secagg-pki="/etc/secagg/pki.json"'

``secagg-client-id`` is the node's stable protocol id (``1 .. 2^63 - 1``), the identity
file holds the 32-byte private key (hex), and the PKI file maps every client id to its
public key (JSON ``{"3": "<hex>", ...}``). :func:`write_identities` creates such files
for a set of clients (distribute them over an authenticated channel: each node needs its
own key and everybody's public keys).

Each node also keeps a :class:`~protocols.round_log.RoundLog` of the rounds it took part
in, so that it refuses a second execution of a round id even after a restart: by default
in the file ``<identity file>.rounds`` beside its identity key (:func:`round_log_path`),
or wherever ``secagg-round-log`` in the node config names (also without an identity key,
against a semi-malicious server). The file holds no secret; losing it loses the
protection.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.parties import MAX_CLIENT_ID as _MAX_CLIENT_ID
from protocols.round_log import RoundLog
from secagg.errors import InvalidParameterError
from secagg.primitives.signing import IdentityKey

__all__ = [
    "CLIENT_ID_KEY",
    "IDENTITY_KEY",
    "PKI_KEY",
    "ROUND_LOG_KEY",
    "write_identities",
    "load_identity",
    "load_pki",
    "node_client_id",
    "node_identity",
    "node_pki",
    "round_log_path",
    "node_round_log",
]

CLIENT_ID_KEY = "secagg-client-id"
IDENTITY_KEY = "secagg-identity"
PKI_KEY = "secagg-pki"
ROUND_LOG_KEY = "secagg-round-log"


def _check_id(client_id: object) -> int:
    if (
        isinstance(client_id, bool)
        or not isinstance(client_id, int)
        or not 0 < client_id <= _MAX_CLIENT_ID
    ):
        raise InvalidParameterError(f"client ids must be ints in [1, 2^63 - 1], got {client_id!r}")
    return client_id


def write_identities(directory: str | os.PathLike[str], client_ids: Iterable[int]) -> Path:
    """Generate an identity key per client and the PKI file; returns the PKI file's path.

    Writes ``identity-<id>.key`` (private, mode 0600) for every id and ``pki.json``.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    public: dict[str, str] = {}
    for client_id in client_ids:
        cid = _check_id(client_id)
        private = Ed25519PrivateKey.generate()
        raw = private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        path = folder / f"identity-{cid}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(raw.hex())
        public[str(cid)] = IdentityKey(private).public_bytes.hex()
    pki_path = folder / "pki.json"
    pki_path.write_text(json.dumps(public, indent=1, sort_keys=True))
    return pki_path


def load_identity(path: str | os.PathLike[str]) -> IdentityKey:
    """An identity key from a file written by :func:`write_identities`.

    Raises:
        InvalidParameterError: unreadable or malformed file.
    """
    try:
        raw = bytes.fromhex(Path(path).read_text().strip())
    except (OSError, ValueError) as exc:
        raise InvalidParameterError(f"cannot read the identity key {path}: {exc}") from None
    return IdentityKey.from_private_bytes(raw)


def load_pki(path: str | os.PathLike[str]) -> dict[int, bytes]:
    """Client id -> identity public key, from a ``pki.json`` file.

    Raises:
        InvalidParameterError: unreadable or malformed file.
    """
    try:
        data = json.loads(Path(path).read_text())
        pki = {_check_id(int(k)): bytes.fromhex(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise InvalidParameterError(f"cannot read the PKI {path}: {exc}") from None
    if any(len(v) != 32 for v in pki.values()):
        raise InvalidParameterError(f"the PKI {path} holds a malformed public key")
    return pki


def _node_value(node_config: Mapping[str, object], key: str) -> object:
    if key not in node_config:
        raise InvalidParameterError(f"the SuperNode's node config has no {key!r}")
    return node_config[key]


def node_client_id(node_config: Mapping[str, object]) -> int:
    """The node's protocol id from ``secagg-client-id``."""
    return _check_id(_node_value(node_config, CLIENT_ID_KEY))


def node_identity(node_config: Mapping[str, object]) -> IdentityKey:
    """The node's identity key from the file named by ``secagg-identity``."""
    return load_identity(str(_node_value(node_config, IDENTITY_KEY)))


def node_pki(node_config: Mapping[str, object]) -> dict[int, bytes]:
    """The PKI from the file named by ``secagg-pki``."""
    return load_pki(str(_node_value(node_config, PKI_KEY)))


def round_log_path(identity_path: str | os.PathLike[str]) -> Path:
    """Where the round log of the identity key in ``identity_path`` lives (``<path>.rounds``)."""
    path = Path(identity_path)
    return path.with_name(path.name + ".rounds")


def node_round_log(node_config: Mapping[str, object]) -> RoundLog | None:
    """The node's persistent round log, or ``None`` if its config names no place for one.

    ``secagg-round-log`` if given, else the file beside ``secagg-identity``
    (:func:`round_log_path`).
    """
    explicit = str(node_config.get(ROUND_LOG_KEY, ""))
    if explicit:
        return RoundLog.at(explicit)
    identity = str(node_config.get(IDENTITY_KEY, ""))
    if identity:
        return RoundLog.at(round_log_path(identity))
    return None
