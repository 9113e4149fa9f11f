"""The privacy ledger on disk: versioned JSON sealed with an HMAC-SHA256.

:func:`write_ledger_file` writes a ledger's dictionary atomically with its MAC
(:func:`ledger_mac`) in an ``"integrity"`` field; the key sits in a private key file next
to it (``LEDGER.json.key``, mode 0600, with the ledger's id and the number of rounds last
saved) unless the caller holds it. :func:`read_ledger_file` checks the MAC before anything
is parsed and :func:`check_not_rolled_back` refuses an older copy or another run's
ledger, both with :class:`~secagg.errors.LedgerIntegrityError`. What the seal protects
against, and what not, is stated in :meth:`dp.ledger.PrivacyLedger.save`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from secagg.errors import InvalidParameterError, LedgerIntegrityError
from secagg.validation import is_int

__all__ = [
    "KEY_FORMAT",
    "KEY_SUFFIX",
    "LEDGER_FORMAT",
    "LEDGER_VERSION",
    "MAC_ALGORITHM",
    "READABLE_VERSIONS",
    "KeyRecord",
    "LedgerDocument",
    "check_key",
    "check_not_rolled_back",
    "ledger_mac",
    "read_key_file",
    "read_ledger_file",
    "write_ledger_file",
]

LEDGER_FORMAT = "secagg-fl/privacy-ledger"
LEDGER_VERSION = 2
#: Versions this library reads; version 1 has no ledger id and is never signed.
READABLE_VERSIONS = (1, 2)
KEY_FORMAT = "secagg-fl/privacy-ledger-key"
KEY_SUFFIX = ".key"
MAC_ALGORITHM = "HMAC-SHA256"
_MAC_DOMAIN = b"secagg-fl/privacy-ledger/hmac-sha256\x00"
_KEY_BYTES = 32


@dataclass(frozen=True)
class KeyRecord:
    """The contents of a ledger key file: the MAC key and what was last saved with it."""

    key: bytes
    rounds: int
    ledger_id: str


@dataclass(frozen=True)
class LedgerDocument:
    """A ledger file as read: its dictionary, whether its MAC was checked, its key record.

    ``key_record`` is the key file's record when the MAC was checked with the key file,
    ``None`` when the caller gave the key or nothing was checked.
    """

    data: dict[str, object]
    signed: bool
    key_record: KeyRecord | None = None


def _canonical(body: Mapping[str, object]) -> bytes:
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"ledger is not canonical JSON: {exc}") from exc
    return text.encode("ascii")


def ledger_mac(body: Mapping[str, object], key: bytes) -> str:
    """HMAC-SHA256 (hex) of a ledger's dictionary (:meth:`dp.ledger.PrivacyLedger.to_dict`).

    Input: a domain-separation prefix, then the dictionary as canonical JSON (sorted keys,
    no whitespace, ASCII, no NaN). JSON numbers round-trip exactly through Python's float
    repr, so the MAC of a parsed file equals the MAC of the ledger that wrote it.
    """
    return hmac.new(check_key(key), _MAC_DOMAIN + _canonical(body), hashlib.sha256).hexdigest()


def check_key(key: object) -> bytes:
    """``key`` as ``bytes``, refusing anything shorter than 16 bytes.

    Raises:
        InvalidParameterError: ``key`` is not bytes of at least 16 bytes.
    """
    if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
        raise InvalidParameterError("a ledger key must be at least 16 bytes")
    return bytes(key)


def _atomic_write(path: str, text: str, *, private: bool) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ledger-", suffix=".tmp", dir=directory)
    try:
        if private:
            os.chmod(tmp, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if not private:
            os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_key_file(key_file: str) -> KeyRecord:
    """The key file's record, refusing a file other users can access.

    Raises:
        LedgerIntegrityError: the file is unreadable, malformed, or not private to its
            owner.
    """
    try:
        info = os.stat(key_file)
        with open(key_file, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise LedgerIntegrityError(f"cannot read the ledger key file {key_file}: {exc}") from exc
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise LedgerIntegrityError(
            f"the ledger key file {key_file} is accessible to other users (mode "
            f"{stat.S_IMODE(info.st_mode):o}); anyone who can read it can forge the ledger: "
            "chmod 600 it"
        )
    try:
        if raw["format"] != KEY_FORMAT:
            raise ValueError("wrong format")
        key = bytes.fromhex(raw["key"])
        rounds = raw["rounds"]
        ledger_id = raw["ledger_id"]
        if not is_int(rounds) or rounds < 0:
            raise ValueError("rounds must be a non-negative integer")
        if not isinstance(ledger_id, str):
            raise ValueError("ledger_id must be a string")
    except (KeyError, TypeError, ValueError) as exc:
        raise LedgerIntegrityError(f"malformed ledger key file {key_file}: {exc}") from exc
    return KeyRecord(check_key(key), int(rounds), ledger_id)


def write_ledger_file(
    path: str | os.PathLike[str],
    body: Mapping[str, object],
    *,
    ledger_id: str,
    rounds: int,
    key: bytes | None = None,
    key_path: str | os.PathLike[str] | None = None,
) -> None:
    """Write ``body`` (a ledger's dictionary) to ``path`` atomically, sealed with its MAC.

    Without ``key`` the key file (``path + ".key"`` unless ``key_path`` says otherwise)
    is reused if it belongs to ``ledger_id``, and created from ``secrets.token_bytes(32)``
    otherwise; it then records ``ledger_id`` and ``rounds``.

    Raises:
        LedgerIntegrityError: the key file is unreadable, not private to its owner, or
            records more rounds of this ledger than ``rounds`` (a rollback).
    """
    path = os.fspath(path)
    key_file: str | None = None
    if key is not None:
        key = check_key(key)
    else:
        key_file = os.fspath(key_path) if key_path is not None else path + KEY_SUFFIX
        if os.path.exists(key_file):
            stored = read_key_file(key_file)
            if stored.ledger_id == ledger_id:
                if stored.rounds > rounds:
                    raise LedgerIntegrityError(
                        f"{key_file} records {stored.rounds} rounds of this ledger; saving "
                        f"{rounds} would roll it back (is this a stale copy?)"
                    )
                key = stored.key
        if key is None:
            key = secrets.token_bytes(_KEY_BYTES)
    document = dict(body)
    document["integrity"] = {"algorithm": MAC_ALGORITHM, "mac": ledger_mac(body, key)}
    _atomic_write(path, json.dumps(document, indent=2, allow_nan=False), private=False)
    if key_file is not None:
        record = {"format": KEY_FORMAT, "key": key.hex(), "ledger_id": ledger_id, "rounds": rounds}
        _atomic_write(key_file, json.dumps(record, indent=2), private=True)


def read_ledger_file(
    path: str | os.PathLike[str],
    *,
    key: bytes | None = None,
    key_path: str | os.PathLike[str] | None = None,
    allow_unsigned: bool = False,
) -> LedgerDocument:
    """The ledger dictionary of ``path``, with its MAC checked.

    A document of another format or version is returned unchecked (parsing it raises the
    precise error); an unsigned one only with ``allow_unsigned``.

    Raises:
        LedgerIntegrityError: the ledger is unsigned (without ``allow_unsigned``), its MAC
            does not match, or its key file is missing, unreadable or readable by others.
        InvalidParameterError: the file is not a JSON object.
    """
    path = os.fspath(path)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidParameterError(f"ledger is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidParameterError("not a privacy ledger (expected a JSON object)")
    if data.get("format") != LEDGER_FORMAT or data.get("version") not in READABLE_VERSIONS:
        return LedgerDocument(data, signed=False)
    integrity = data.pop("integrity", None)
    if integrity is None:
        if not allow_unsigned:
            raise LedgerIntegrityError(
                f"{path} is not signed: its contents could have been edited by anyone who "
                "could write it; pass allow_unsigned=True only for a ledger you trust that "
                "was written before ledgers were signed"
            )
        return LedgerDocument(data, signed=False)
    stored = None
    if key is None:
        key_file = os.fspath(key_path) if key_path is not None else path + KEY_SUFFIX
        if not os.path.exists(key_file):
            raise LedgerIntegrityError(
                f"no key file {key_file} to check {path} with; pass key= or key_path="
            )
        stored = read_key_file(key_file)
        key = stored.key
    key = check_key(key)
    if (
        not isinstance(integrity, Mapping)
        or integrity.get("algorithm") != MAC_ALGORITHM
        or not isinstance(integrity.get("mac"), str)
    ):
        raise LedgerIntegrityError(f"{path}: malformed integrity field")
    try:
        expected = ledger_mac(data, key)
    except (InvalidParameterError, ValueError, TypeError) as exc:
        raise LedgerIntegrityError(f"{path} cannot be checked: {exc}") from exc
    if not hmac.compare_digest(expected, str(integrity["mac"])):
        raise LedgerIntegrityError(
            f"{path} does not match its MAC: it was modified after it was saved, or it "
            "was signed with another key"
        )
    return LedgerDocument(data, signed=True, key_record=stored)


def check_not_rolled_back(
    path: str | os.PathLike[str],
    *,
    ledger_id: str,
    rounds: int,
    stored: KeyRecord | None,
    min_rounds: int | None = None,
) -> None:
    """Refuse a ledger that is another run's, or older than its key file or ``min_rounds``.

    Raises:
        LedgerIntegrityError: the message says which check failed.
    """
    path = os.fspath(path)
    if stored is not None:
        if stored.ledger_id != ledger_id:
            raise LedgerIntegrityError(
                f"{path} is ledger {ledger_id}, but its key file is for "
                f"{stored.ledger_id}: another run's ledger was put in its place"
            )
        if rounds < stored.rounds:
            raise LedgerIntegrityError(
                f"{path} records {rounds} rounds but {stored.rounds} were saved: "
                "an older copy was put in its place"
            )
    if min_rounds is not None and rounds < min_rounds:
        raise LedgerIntegrityError(
            f"{path} records {rounds} rounds, fewer than the {min_rounds} expected"
        )
