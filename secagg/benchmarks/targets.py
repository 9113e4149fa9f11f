"""Targets of the benchmark suites and the verdict of each measured row.

A row with a target carries ``"target"`` (its label, e.g. ``"<= 1.5x floor"``),
``"target_met"`` (``True`` or ``False``) and ``"target_of"`` (what was measured, for the
summary line). Tables show the verdict in a column of its own (``met`` / ``MISSED``) and
end with one summary line, so that nobody has to compare a ratio with a target by eye.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass

from secagg.errors import InvalidParameterError

__all__ = ["Target", "judge", "verdict", "summary_line", "counts"]

MET = "met"
MISSED = "MISSED"
NO_TARGET = "-"


@dataclass(frozen=True)
class Target:
    """A figure a row must reach.

    Attributes:
        limit: the bound.
        at_most: ``True`` when the measured value must be ``<= limit`` (a cost ratio),
            ``False`` when it must be ``>= limit`` (a speed-up).
        label: how the target reads in a table, e.g. ``"<= 1.5x floor"``.
    """

    limit: float
    at_most: bool
    label: str

    def met(self, value: float) -> bool:
        """Whether ``value`` reaches the target."""
        return value <= self.limit if self.at_most else value >= self.limit


def judge(
    row: MutableMapping[str, object], value: float, target: Target, what: str, *, unit: str = "x"
) -> None:
    """Record in ``row`` the target, whether ``value`` meets it, and what was measured.

    ``unit`` is how the value reads in the summary: ``"x"`` for a ratio, else a unit
    written after the number (``"s"``, ``"B"``).
    """
    if value != value:  # NaN
        raise InvalidParameterError(f"no figure to judge for {what}")
    row["target"] = target.label
    row["target_met"] = target.met(value)
    row["target_of"] = what
    row["target_value"] = value
    row["target_unit"] = unit


def verdict(row: Mapping[str, object]) -> str:
    """``met``, ``MISSED``, or ``-`` for a row without a target."""
    met = row.get("target_met")
    if met is None:
        return NO_TARGET
    return MET if met else MISSED


def counts(rows: Iterable[Mapping[str, object]]) -> tuple[int, int]:
    """``(met, missed)`` over the rows that have a target."""
    judged = [bool(r["target_met"]) for r in rows if r.get("target_met") is not None]
    return sum(judged), len(judged) - sum(judged)


def summary_line(
    rows: Iterable[Mapping[str, object]], *, quick: bool = False, none_note: str = ""
) -> str:
    """How many targets were met (one line), then one indented line per missed target.

    Args:
        rows: the suite's rows.
        quick: the run used ``--quick`` sizes (the targets are set for the full sizes).
        none_note: said instead when no row has a target.
    """
    rows = list(rows)
    met, missed = counts(rows)
    if met + missed == 0:
        return "targets: none measured in this run" + (f" ({none_note})" if none_note else "")
    line = f"targets: {met} of {met + missed} met" + (f", {missed} MISSED" if missed else "")
    if quick:
        line += " (quick sizes: the targets are set for the full run)"
    failed = [r for r in rows if r.get("target_met") is False]
    return "\n".join(
        [line] + [f"  MISSED {r['target_of']}: {_value(r)}, target {r['target']}" for r in failed]
    )


def _value(row: Mapping[str, object]) -> str:
    value = row.get("target_value")
    if not isinstance(value, (int, float)):
        return "?"
    unit = row.get("target_unit", "x")
    if unit == "x":
        return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"
    return f"{value:.3g} {unit}"
