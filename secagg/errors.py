"""The one exception hierarchy of the library.

Every error raised on purpose by ``secagg``, ``dp``, ``protocols`` or ``threat_models``
derives from :class:`SecAggError`. Errors that report misuse of an argument also derive
from :class:`ValueError` (or :class:`TypeError`) so that generic callers can catch them
the usual way.

Authentication failures of any kind (bad tag, bad signature, redirected or replayed
ciphertext) collapse into one opaque :class:`AuthenticationError` whose message never
says *which* check failed, as Fernet's ``InvalidToken`` does.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import NoReturn

__all__ = [
    "SecAggError",
    "InvalidParameterError",
    "EncodingError",
    "CapacityError",
    "ShareError",
    "ThresholdNotMetError",
    "AuthenticationError",
    "AlreadyFinalizedError",
    "MessageError",
    "ReplayError",
    "StageError",
    "ProtocolAbortError",
    "RoundRestartError",
    "InfeasibleThreatModelError",
    "BudgetExceededError",
    "UnsupportedEventError",
    "LedgerIntegrityError",
    "MissingExtraError",
    "EXTRA_MODULES",
    "require_extra",
    "require_installed",
    "raise_missing_extra",
]


class SecAggError(Exception):
    """Base class of every error this library raises on purpose."""


class InvalidParameterError(SecAggError, ValueError):
    """An argument or configuration value is out of its documented domain."""


class EncodingError(SecAggError, ValueError):
    """Input cannot be encoded faithfully (non-finite, out of range, wrong shape)."""


class CapacityError(SecAggError, ValueError):
    """A configuration or an operation would overflow the available headroom.

    Raised, for example, when the sum of the largest admitted cohort could wrap the
    modulus, or when a Paillier aggregate would receive more ciphertexts than its
    packing headroom allows.
    """


class ShareError(SecAggError, ValueError):
    """Secret shares are malformed, duplicated, mixed from different sharings, or inconsistent."""


class ThresholdNotMetError(SecAggError):
    """Fewer than the required number of shares, survivors or decryptors are available."""


class AuthenticationError(SecAggError):
    """Authentication failed. Deliberately opaque: the message never says which check failed."""

    def __init__(self, message: str = "authentication failed") -> None:
        super().__init__(message)


class AlreadyFinalizedError(SecAggError):
    """A single-use object or a state machine was asked to repeat or undo a finished step."""


class MessageError(SecAggError, ValueError):
    """An incoming wire message is malformed: bad version, type, size or field."""


class ReplayError(MessageError):
    """A message was replayed, arrived out of order, or belongs to another round."""


class StageError(SecAggError):
    """A message or an action does not belong to the current protocol stage."""


class ProtocolAbortError(SecAggError):
    """A protocol round was aborted; ``reason`` says why (never which secret was involved)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RoundRestartError(ThresholdNotMetError):
    """The round cannot continue with these clients; start a new round (new id) without
    ``excluded``.

    Raised by a server when committed clients withheld their contribution to the graph
    seed: the seed must contain every committed contribution (otherwise the server could
    choose the graph by choosing whose contributions to drop), so the honest way on is a
    fresh round without them. Nothing was revealed.
    """

    def __init__(self, reason: str, excluded: frozenset[int]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.excluded = frozenset(excluded)


class InfeasibleThreatModelError(SecAggError, ValueError):
    """No protocol parameters satisfy the threat model; the message names the failing bound."""


class BudgetExceededError(SecAggError):
    """Applying a mechanism would push a tracked privacy budget over its limit."""


class UnsupportedEventError(SecAggError, TypeError):
    """An accountant cannot handle a DP event; the message names the event."""


class LedgerIntegrityError(SecAggError):
    """A saved privacy ledger failed its integrity check (modified, rolled back, unsigned, or no
    key)."""


class MissingExtraError(SecAggError, ImportError):
    """A feature needs an optional dependency that is not installed.

    The core install (``pip install secagg-fl``) carries only what the primitives, the
    protocols, the accounting and the server side need. Tensors and Opacus, the
    evaluation harness, plots and Flower are extras; the message names the one to
    install, e.g. ``pip install 'secagg-fl[torch]'``.

    Attributes:
        extra: the name of the extra that provides the missing module.
        module: the top-level module that could not be imported.
    """

    def __init__(self, feature: str, module: str, extra: str) -> None:
        self.feature = feature
        self.module = module
        self.extra = extra
        super().__init__(
            f"{feature} needs {module!r}, which is not installed: pip install 'secagg-fl[{extra}]'",
            name=module,
        )


#: The top-level modules each extra of ``secagg-fl`` installs (``all`` installs them all).
EXTRA_MODULES: Mapping[str, frozenset[str]] = {
    "torch": frozenset({"torch", "opacus"}),
    "plot": frozenset({"matplotlib"}),
    "eval": frozenset({"torch", "opacus", "sklearn", "matplotlib", "mlxtend", "threadpoolctl"}),
    "flower": frozenset({"flwr"}),
}


def _top_level(module: str) -> str:
    return module.split(".")[0]


def require_extra(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``.

    Args:
        module: the module to import (e.g. ``"torch"``).
        extra: the extra of ``secagg-fl`` that installs it (e.g. ``"torch"``).
        feature: what needs it, for the message (e.g. ``"dp.opacus_client"``).

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = (exc.name or module).split(".")[0]
        if missing != module.split(".")[0]:
            raise
        raise MissingExtraError(feature, missing, extra) from exc


def require_installed(modules: Iterable[str], extra: str, feature: str) -> None:
    """Check that ``modules`` are installed, without importing them.

    For code that imports its optional dependencies lazily (inside functions) but should
    fail at once, before any work, when they are missing -- without paying for importing
    them (torch takes seconds).

    Args:
        modules: top-level modules to look for (e.g. ``("torch", "sklearn")``).
        extra: the extra of ``secagg-fl`` that installs them.
        feature: what needs them, for the message.

    Raises:
        MissingExtraError: naming the first module that is not installed.
    """
    for module in modules:
        name = _top_level(module)
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise MissingExtraError(feature, name, extra)


def raise_missing_extra(exc: ImportError, extra: str, feature: str) -> NoReturn:
    """Turn the ``ImportError`` of a guarded import block into :class:`MissingExtraError`.

    Keeps static typing, unlike :func:`require_extra`: the imports stay plain statements::

        try:
            import torch
        except ImportError as exc:
            raise_missing_extra(exc, "torch", "dp.opacus_client")

    Args:
        exc: the error the import raised.
        extra: the extra of ``secagg-fl`` that installs the guarded modules.
        feature: what needs them, for the message.

    Raises:
        MissingExtraError: when the missing module is one that ``extra`` installs.
        ImportError: ``exc`` itself otherwise (a broken install, a missing module that
            no extra provides), so that the real cause is not hidden.
    """
    missing = _top_level(exc.name or "")
    if missing and missing in EXTRA_MODULES.get(extra, frozenset()):
        raise MissingExtraError(feature, missing, extra) from exc
    raise exc
