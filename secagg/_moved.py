"""Old module paths kept importable for one release, each with a DeprecationWarning.

The layout of 0.2 moved modules into sub-packages that show the layers (see
``ARCHITECTURE.md``); ``import secagg.encoding`` and the like still work until 0.3 and
name the new path. Nothing here is imported by the library itself.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

__all__ = ["MOVED", "install"]

_PRIMITIVES = (
    "encoding prg keys aead signing shamir transcript paillier threshold_paillier "
    "distributed_paillier simulation"
).split()

MOVED: dict[str, str] = {
    **{f"secagg.{m}": f"secagg.primitives.{m}" for m in _PRIMITIVES},
    "secagg.bench": "secagg.cli.bench",
    "dp.cli": "secagg.cli.audit",
    "threat_models.cli": "secagg.cli.evaluate",
    **{
        f"protocols.{m}": f"protocols.masking.{m}"
        for m in ("client", "server", "messages", "config", "graph", "driver")
    },
    "protocols.paillier_keygen": "protocols.paillier.keygen",
    "protocols.paillier_keygen_messages": "protocols.paillier.keygen_messages",
    "threat_models.evaluate": "threat_models.evaluation",
    "threat_models.report": "threat_models.evaluation.report",
}
"""Old dotted module path -> where the module lives now."""


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self._target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self._target}; the old path goes away in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self._target)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module is the one already imported under its new name."""


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


_FINDER = _MovedFinder()


def install() -> None:
    """Make the old paths of :data:`MOVED` importable (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)
