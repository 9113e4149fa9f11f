"""The ``secagg`` console script.

Subcommands live in their own modules and are imported lazily, so that ``secagg --help``
stays fast and a missing optional dependency only affects the subcommand that needs it.
Each subcommand module provides::

    def configure(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...

and every subcommand accepts ``--json PATH`` to write its machine-readable result.

``secagg --version`` prints the installed version. An interrupt (Ctrl-C) during any
subcommand ends it with one line on stderr and exit status 130, without a traceback. A
subcommand whose optional dependencies are not installed (``secagg demo`` and ``secagg
evaluate`` need the ``eval`` extra) ends with one line naming the extra and status 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from secagg import __version__
from secagg.errors import MissingExtraError, SecAggError

# name -> (module implementing it, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "secagg.demo",
        "federated training on an offline dataset, wrapped with secure aggregation and DP",
    ),
    "bench": (
        "secagg.cli.bench",
        "benchmarks of the primitives and protocols (figures go in benchmarks/RESULTS.md)",
    ),
    "evaluate": ("secagg.cli.evaluate", "attack x defense evaluation matrix with a report"),
    "audit": ("secagg.cli.audit", "privacy accounting from parameters or from a saved ledger"),
}


DISTRIBUTION = "secagg-fl"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process ended by Ctrl-C
EXIT_MISSING_EXTRA = 2  # as argparse's usage errors: the command cannot run as installed


def version() -> str:
    """The installed version of the package (the source tree's when it is not installed)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return __version__


class _SubcommandModule(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """Build the top-level parser; subcommand options are added only for the one invoked."""
    parser = argparse.ArgumentParser(
        prog="secagg",
        description="Privacy-hardened secure aggregation for federated learning.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers: dict[str, argparse.ArgumentParser] = {}
    for name, (_, help_text) in SUBCOMMANDS.items():
        subparsers[name] = sub.add_parser(name, help=help_text, description=help_text)
    return parser, subparsers


def _load(name: str) -> _SubcommandModule:
    module_name = SUBCOMMANDS[name][0]
    return cast(_SubcommandModule, importlib.import_module(module_name))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("secagg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parser()
    command = next((a for a in args_list if not a.startswith("-")), None)
    module: _SubcommandModule | None = None
    if command in SUBCOMMANDS:
        try:
            module = _load(command)
        except MissingExtraError as exc:
            print(f"secagg {command}: error: {exc}", file=sys.stderr)
            return EXIT_MISSING_EXTRA
        except ImportError as exc:
            parser.error(f"subcommand {command!r} is unavailable: {exc}")
        module.configure(subparsers[command])
    args = parser.parse_args(args_list)
    if args.command is None or module is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return module.run(args)
    except MissingExtraError as exc:
        print(f"secagg {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_MISSING_EXTRA
    except SecAggError as exc:
        print(f"secagg {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
