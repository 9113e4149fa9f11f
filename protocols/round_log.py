"""What a party remembers across restarts: the rounds it has already taken part in.

A signature or an upload bound to a round id is only as fresh as that id. The server picks
round ids, so a server that runs *one* round id twice could replay in the second execution
what honest parties signed in the first (consistency signatures on lists it chose, signed
Paillier uploads minus one client's). Every identity-holding party therefore records each
round it takes part in, *before* it releases anything bound to that round, and refuses a
second execution of the same round: :meth:`RoundLog.claim` raises
:class:`~secagg.errors.ReplayError`.

Where the record lives decides what it protects:

* :meth:`RoundLog.at` keeps it in a file (one line per claimed round, appended and
  ``fsync``-ed under an exclusive lock before :meth:`~RoundLog.claim` returns). Keep the
  file where the deployment keeps the party's long-term identity key, so that a restarted
  node (or a copy of the key on another machine that shares the file) still refuses the
  rounds it took part in. Losing the file loses the protection; the file holds no secret.
* :meth:`RoundLog.in_memory` forgets on exit: for simulations and tests.
  :func:`identity_log` returns one process-wide in-memory log per identity key, which the
  protocol parties use when none is given, so that one identity object can never take part
  in two executions of a round within a process.

The log is keyed by a *scope* (which protocol and role, e.g. ``"secagg"``,
``"paillier-upload"``, ``"paillier-decrypt"``) and the round id.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from protocols.framing import MAX_U64
from secagg.errors import InvalidParameterError, ReplayError
from secagg.validation import require_bytes, require_int

__all__ = ["RoundLog", "identity_log"]

_MAX_ROUND_ID = MAX_U64


def _entry(scope: str, round_id: int) -> str:
    """The log line of ``(scope, round_id)``; the scope is the only domain-specific check."""
    if not isinstance(scope, str) or not scope or any(c.isspace() for c in scope):
        raise InvalidParameterError(
            f"scope must be a non-empty string without spaces, got {scope!r}"
        )
    return f"{scope} {require_int('round_id', round_id, lo=0, hi=_MAX_ROUND_ID)}"


class RoundLog:
    """The set of ``(scope, round_id)`` a party has taken part in (see the module docstring).

    Use :meth:`at` (persistent) or :meth:`in_memory`; thread-safe, and safe for several
    processes sharing one file.
    """

    __slots__ = ("_path", "_claimed", "_lock")

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._path: Path | None = Path(path) if path is not None else None
        self._claimed: set[str] = set()
        self._lock = threading.Lock()
        if self._path is not None:
            self._claimed = self._read()

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> RoundLog:
        """A log persisted in ``path`` (created on the first claim; parent folders too)."""
        return cls(path)

    @classmethod
    def in_memory(cls) -> RoundLog:
        """A log that forgets when the process ends (simulations and tests)."""
        return cls(None)

    @property
    def path(self) -> Path | None:
        """The backing file, or ``None`` for an in-memory log."""
        return self._path

    def _read(self) -> set[str]:
        if self._path is None:
            return set()
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return set()
        except OSError as exc:
            raise InvalidParameterError(f"cannot read the round log {self._path}: {exc}") from None
        out = set()
        for line in text.splitlines():
            parts = line.split(" ")
            if len(parts) != 2 or not parts[1].isdigit():
                raise InvalidParameterError(
                    f"the round log {self._path} is corrupt (line {line!r})"
                )
            out.add(line)
        return out

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        scope, round_id = key
        try:
            entry = _entry(scope, round_id)
        except InvalidParameterError:
            return False
        with self._lock:
            if self._path is not None:
                self._claimed |= self._read()
            return entry in self._claimed

    def __len__(self) -> int:
        with self._lock:
            return len(self._claimed)

    def claim(self, scope: str, round_id: int) -> None:
        """Record that this party takes part in ``round_id`` under ``scope``.

        Persisted (for a file-backed log) before returning: call it before releasing
        anything bound to the round.

        Raises:
            ReplayError: this party already took part in that round.
            InvalidParameterError: a bad scope or round id, or the file cannot be written.
        """
        entry = _entry(scope, round_id)
        with self._lock:
            if self._path is None:
                if entry in self._claimed:
                    raise ReplayError(
                        f"round {round_id} ({scope}) was already executed by this party"
                    )
                self._claimed.add(entry)
                return
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                with open(self._path, "a+", encoding="utf-8") as fh:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                    try:
                        fh.seek(0)
                        lines = set(fh.read().splitlines())
                        if entry in lines or entry in self._claimed:
                            self._claimed |= lines
                            raise ReplayError(
                                f"round {round_id} ({scope}) was already executed by this party"
                            )
                        fh.write(entry + "\n")
                        fh.flush()
                        os.fsync(fh.fileno())
                    finally:
                        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            except OSError as exc:
                raise InvalidParameterError(
                    f"cannot write the round log {self._path}: {exc}"
                ) from None
            self._claimed |= lines
            self._claimed.add(entry)


_IDENTITY_LOGS: dict[bytes, RoundLog] = {}
_IDENTITY_LOCK = threading.Lock()


def identity_log(public_key: bytes) -> RoundLog:
    """The process-wide in-memory log of the identity with this public key (created once)."""
    if not require_bytes("public_key", public_key):
        raise InvalidParameterError("public_key must be non-empty bytes")
    with _IDENTITY_LOCK:
        log = _IDENTITY_LOGS.get(public_key)
        if log is None:
            log = _IDENTITY_LOGS[public_key] = RoundLog.in_memory()
        return log
