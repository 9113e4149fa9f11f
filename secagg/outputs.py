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
"""

from __future__ import annotations

import os
from pathlib import Path

from secagg.errors import InvalidParameterError

__all__ = ["EXIT_OUTPUT_REFUSED", "OUTPUT_RULE", "prepare_output_file", "prepare_output_dir"]

#: Exit status when an output path is refused (the status of a command-line usage error).
EXIT_OUTPUT_REFUSED = 2

#: The rule, worded for ``--help`` texts.
OUTPUT_RULE = "missing parent directories are created"


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
        raise InvalidParameterError(f"cannot write {option} {target}: it is a file, not a directory")
    _create_dir(target, option, target)
    _check_writable(target, option, target)
    return target
