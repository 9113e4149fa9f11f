"""Output paths of the command line, checked before any work starts.

Every subcommand that writes a file (``--json PATH``, ``--plot PATH``, ``--out DIR``)
follows one rule, stated in its ``--help``:

* a missing parent directory is **created** (as ``secagg evaluate --out`` always did);
* the path is **refused** -- one line on stderr, exit status 2, before any computation --
  when that directory cannot be created (a file stands in the way, no permission, a
  read-only file system), when it is not writable, or when the path itself names an
  existing directory.

Checking first matters because the work can take minutes: a path that cannot be written
must not cost the user a whole benchmark or audit before a ``FileNotFoundError``.

What every ``--json`` file contains follows one rule too (:func:`json_text`): it is strict
JSON (RFC 8259). A non-finite number -- an infinite epsilon, a NaN metric -- is written as
``null``, and the top-level key ``"non_finite"`` (present only then) maps the JSON Pointer
(RFC 6901) of each such ``null`` to ``"nan"``, ``"inf"`` or ``"-inf"``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from secagg.errors import InvalidParameterError

__all__ = [
    "EXIT_OUTPUT_REFUSED",
    "NON_FINITE_KEY",
    "OUTPUT_RULE",
    "json_text",
    "prepare_output_dir",
    "prepare_output_file",
    "strict_json",
]

#: Exit status when an output path is refused (the status of a command-line usage error).
EXIT_OUTPUT_REFUSED = 2

#: The rule, worded for ``--help`` texts.
OUTPUT_RULE = "missing parent directories are created"

#: The top-level key of a ``--json`` document naming the numbers written as ``null``.
NON_FINITE_KEY = "non_finite"


def _create_dir(directory: Path, option: str, path: Path) -> None:
    if directory.is_dir():
        return
    blocking = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise InvalidParameterError(
            f"cannot write {option} {path}: {blocking} is a file, not a directory"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InvalidParameterError(
            f"cannot write {option} {path}: cannot create the directory {directory} ({reason})"
        ) from exc


def _check_writable(directory: Path, option: str, path: Path) -> None:
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InvalidParameterError(
            f"cannot write {option} {path}: the directory {directory} is not writable"
        )


def prepare_output_file(path: str | os.PathLike[str], option: str) -> Path:
    """Make sure the file ``path`` can be written later; create its missing parents.

    Args:
        path: where the command will write (``--json PATH``, ``--plot PATH``, ...).
        option: the option's name, for the message (e.g. ``"--json"``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InvalidParameterError: the path is an existing directory, or its parent directory
            cannot be created or is not writable. The message names the option and the path.
    """
    target = Path(path)
    if target.is_dir():
        raise InvalidParameterError(f"cannot write {option} {target}: it is a directory")
    parent = target.parent if str(target.parent) else Path(".")
    _create_dir(parent, option, target)
    _check_writable(parent, option, target)
    return target


def prepare_output_dir(path: str | os.PathLike[str], option: str) -> Path:
    """Make sure the directory ``path`` exists (created with its parents) and is writable.

    Raises:
        InvalidParameterError: ``path`` is an existing file, or it cannot be created or
            is not writable. The message names the option and the path.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise InvalidParameterError(
            f"cannot write {option} {target}: it is a file, not a directory"
        )
    _create_dir(target, option, target)
    _check_writable(target, option, target)
    return target


def _non_finite_name(x: float) -> str:
    if math.isnan(x):
        return "nan"
    return "inf" if x > 0 else "-inf"


def _pointer_token(key: object) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def strict_json(value: object) -> tuple[object, dict[str, str]]:
    """``value`` with every non-finite number replaced by ``None``, and what was replaced.

    Dicts, lists and tuples are walked (tuples become lists); a real non-integral number
    (``float``, a numpy floating scalar) becomes a Python ``float``, or ``None`` when it is
    NaN or infinite. Other objects are returned as they are.

    Returns:
        ``(clean, replaced)``: ``replaced`` maps the JSON Pointer of each ``None`` put in
        place of a number (``"/rows/3/value"``) to ``"nan"``, ``"inf"`` or ``"-inf"``.
    """
    replaced: dict[str, str] = {}

    def walk(item: object, pointer: str) -> object:
        if isinstance(item, Mapping):
            return {k: walk(v, f"{pointer}/{_pointer_token(k)}") for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [walk(v, f"{pointer}/{i}") for i, v in enumerate(item)]
        if isinstance(item, numbers.Real) and not isinstance(item, numbers.Integral):
            x = float(item)
            if math.isfinite(x):
                return x
            replaced[pointer] = _non_finite_name(x)
            return None
        return item

    return walk(value, ""), replaced


def json_text(
    document: Mapping[str, object], *, default: Callable[[object], object] | None = None
) -> str:
    """The strict-JSON text of a ``--json`` document (indented, ending in a newline).

    Non-finite numbers become ``null`` and are listed under :data:`NON_FINITE_KEY` (see
    the module docstring), so that any JSON parser reads the file; ``default`` is passed
    to :func:`json.dumps` for objects it cannot serialise.
    """
    clean, replaced = strict_json(document)
    if not isinstance(clean, dict):  # a Mapping always walks to a dict
        raise TypeError("a --json document must be a mapping")
    if replaced:
        clean[NON_FINITE_KEY] = replaced
    return json.dumps(clean, indent=2, allow_nan=False, default=default) + "\n"
