"""The standalone script shared by the benchmark suites: ``--quick``, ``--json``, a table.

Each suite's ``main`` (run by ``python benchmarks/bench_<suite>.py``) parses the same two
options, checks the output path before the run (a path that cannot be written fails at
once, not after minutes of timing), prints the suite's table and writes its result.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Protocol

from secagg.errors import InvalidParameterError
from secagg.outputs import json_text, prepare_output_file


class SuiteRun(Protocol):
    """A suite's ``run``: its result (with a printable ``"table"``) at the given size."""

    def __call__(self, *, quick: bool = False) -> Mapping[str, object]: ...


#: a suite's markdown section of ``RESULTS.md``: result and ``quick`` in, text out
SuiteMarkdown = Callable[[Mapping[str, object], bool], str]


def suite_main(
    doc: str | None,
    run: SuiteRun,
    argv: list[str] | None,
    *,
    quick_help: str,
    markdown: SuiteMarkdown | None = None,
) -> int:
    """Parse ``argv``, run the suite, print its table, write ``--json`` (and ``--markdown``).

    Args:
        doc: the suite module's docstring (its first line describes the script).
        run: the suite's run.
        argv: the command line without the program name (``None``: ``sys.argv[1:]``).
        quick_help: what ``--quick`` changes, for ``--help``.
        markdown: when given, the script takes ``--markdown PATH`` and writes this text.

    Returns:
        0. A bad command line, or an output path that cannot be written, exits with
        status 2 and one line on standard error before the suite runs.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", metavar="PATH", help="write the result as JSON (parents created)")
    if markdown is not None:
        parser.add_argument(
            "--markdown",
            metavar="PATH",
            help="also write a markdown section here (parents created)",
        )
    args = parser.parse_args(argv)
    markdown_arg = getattr(args, "markdown", None)
    try:
        json_path = prepare_output_file(args.json, "--json") if args.json else None
        markdown_path = prepare_output_file(markdown_arg, "--markdown") if markdown_arg else None
    except InvalidParameterError as exc:
        parser.error(str(exc))
    result = run(quick=bool(args.quick))
    print(result["table"])
    if json_path is not None:
        json_path.write_text(json_text(result, default=str))
    if markdown is not None and markdown_path is not None:
        markdown_path.write_text(markdown(result, bool(args.quick)))
        print(f"markdown written to {markdown_path}", file=sys.stderr)
    return 0
