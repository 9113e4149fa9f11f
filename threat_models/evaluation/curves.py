"""Privacy-utility curves: each attack's success against epsilon, the model's accuracy beside.

For every family with at least one DP row, :func:`privacy_utility_points` takes the
family's primary rows -- one :class:`CurvePoint` each: the attack, the defence, its epsilon
(``None``: no DP), the attack's metric and value with its success threshold, confidence
interval and trivial baseline, and the accuracy of the model trained under that defence
(:mod:`threat_models.evaluation.utility`). :func:`curves_json` is the same as JSON (the
``"privacy_utility"`` entry of ``--json``); :func:`save_privacy_utility_figures` draws one
figure per family, ``privacy_utility_<family>.png``:

* left, one panel per metric: the attack's value against epsilon (log axis; epsilon at
  the row's delta for the row's unit, per client unless the level says otherwise), one
  line per attack, error bars from the confidence interval when the row has one, the
  trivial baseline as a dotted line of the attack's colour and the success threshold as a
  dashed grey line. The rows without DP sit at the right edge, at
  :func:`no_dp_position`, labelled "no DP";
* right: the test accuracy of the model trained under each defence, on the same axis.

Figures are drawn on matplotlib's Agg canvas (no global backend, no display).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from secagg.errors import raise_missing_extra
from threat_models.evaluation.rows import Family, Row

try:
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure
except ImportError as exc:  # the core install has no matplotlib
    raise_missing_extra(exc, "eval", "threat_models.evaluation.curves")

__all__ = [
    "CurvePoint",
    "curve_lines",
    "CURVES_GUIDE",
    "NO_DP_LABEL",
    "curve_file_name",
    "epsilon_label",
    "privacy_utility_points",
    "curves_json",
    "no_dp_position",
    "privacy_utility_figure",
    "save_privacy_utility_figures",
]

#: Tick label of the rows without DP noise, drawn at the right edge of a curve.
NO_DP_LABEL = "no DP"

CURVES_GUIDE = (
    "Each curve shows, for one attack family, how the attack fares as the privacy of the "
    "defence weakens. x: the defence's epsilon at delta 1e-5 per client (per training "
    "example where the axis says so: DP-SGD; log scale, larger is less private); the rows "
    "without DP noise sit at the right edge, labelled "
    f'"{NO_DP_LABEL}". y (left panels): the attack\'s success metric, one line per attack '
    "(per kind of DP defence where an attack meets several), with error bars where several "
    "seeds give a confidence interval; the dashed grey line is "
    "the success threshold (the attack succeeds above it, or below it for a metric where "
    "lower is better) and the dotted line of the attack's colour its trivial baseline (what "
    "an attacker gets for free). Right panel: the test accuracy of the model trained under "
    "the same defences, so that the epsilon at which an attack stops can be read next to what "
    "that epsilon costs the model. Attacks and metrics measured only without DP noise (the "
    "plaintext controls, whether a round aborted) are in the tables, not on the curves."
)
"""How to read a privacy-utility figure (the report prints it above the figures)."""


@dataclass(frozen=True)
class CurvePoint:
    """One point of a privacy-utility curve: one primary row.

    Attributes:
        attack, defense, metric, value: the row's.
        epsilon: the defence's epsilon (``None``: no DP noise).
        threshold: the success threshold on ``value`` (``None``: the verdict is not one).
        accuracy: test accuracy of the model trained under the defence (``None``: no model).
        ci_low, ci_high: the confidence interval of ``value`` (``None``: one seed).
        baseline: the trivial attacker's value.
        delta, epsilon_level: the delta of ``epsilon`` and whose privacy it bounds
            (``"user"``: one client, ``"sample"``: one training example).
        protection: what the defence consists of (the value of the row's
            :class:`~threat_models.evaluation.rows.Protection`): an attack met by two kinds
            of DP defence is drawn as one line per kind.
    """

    attack: str
    defense: str
    epsilon: float | None
    metric: str
    value: float
    threshold: float | None
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    baseline: float | None
    delta: float | None = None
    epsilon_level: str | None = None
    protection: str = ""

    @classmethod
    def of(cls, row: Row) -> CurvePoint:
        """The point of ``row``."""
        return cls(
            attack=row.attack,
            defense=row.defense,
            epsilon=row.epsilon,
            metric=row.metric,
            value=row.value,
            threshold=row.threshold,
            accuracy=row.accuracy,
            ci_low=row.ci_low,
            ci_high=row.ci_high,
            baseline=row.baseline,
            delta=row.delta,
            epsilon_level=None if row.epsilon_level is None else row.epsilon_level.value,
            protection=row.protection.value,
        )

    def to_json(self) -> dict[str, object]:
        """The point as a JSON object (non-finite numbers are left to the strict rule)."""
        return asdict(self)


def curve_file_name(family: Family) -> str:
    """``privacy_utility_<family>.png``, ``<family>`` the family's value."""
    return f"privacy_utility_{family.value}.png"


def privacy_utility_points(rows: Sequence[Row]) -> dict[Family, list[CurvePoint]]:
    """The primary rows of every family with at least one DP row, as curve points.

    A DP row is one that states an epsilon. Families are in :class:`Family` order, points
    in row order.
    """
    out: dict[Family, list[CurvePoint]] = {}
    for family in Family:
        mine = [r for r in rows if r.family is family]
        if any(r.epsilon is not None for r in mine):
            out[family] = [CurvePoint.of(r) for r in mine if r.primary]
    return out


def curves_json(rows: Sequence[Row]) -> dict[str, list[dict[str, object]]]:
    """:func:`privacy_utility_points` as JSON, keyed by the family's value."""
    return {
        family.value: [p.to_json() for p in points]
        for family, points in privacy_utility_points(rows).items()
    }


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def no_dp_position(epsilons: Sequence[float | None]) -> float:
    """Where the points without DP are drawn: a decade past the decade of the largest epsilon.

    A point whose epsilon is ``None`` or infinite is drawn there (1 with no finite epsilon).
    """
    finite = [e for e in epsilons if e is not None and math.isfinite(e) and e > 0]
    if not finite:
        return 1.0
    return float(10.0 ** (math.ceil(math.log10(max(finite))) + 1))


def epsilon_label(points: Sequence[CurvePoint]) -> str:
    """The x label: epsilon at the points' delta, per client or per example."""
    deltas = sorted({p.delta for p in points if p.delta is not None})
    units = sorted({_UNITS.get(p.epsilon_level or "", "?") for p in points if p.epsilon_level})
    delta = f"delta {deltas[0]:g}" if len(deltas) == 1 else "delta per row"
    return f"epsilon ({delta}, {' / '.join(units) or 'per client'})"


_UNITS = {"user": "per client", "sample": "per training example"}


def _x(point: CurvePoint, edge: float) -> float:
    eps = point.epsilon
    return eps if eps is not None and math.isfinite(eps) and eps > 0 else edge


def _decade_ticks(points: Sequence[CurvePoint], edge: float) -> list[float]:
    finite = [p.epsilon for p in points if p.epsilon is not None and _x(p, edge) != edge]
    low = math.floor(math.log10(min(finite))) if finite else 0
    # no decade tick right next to the "no DP" edge: the labels would collide
    return [10.0**k for k in range(low, round(math.log10(edge)) - 1)]


def curve_lines(points: Sequence[CurvePoint], edge: float) -> list[tuple[str, list[CurvePoint]]]:
    """The lines of a metric panel: one per attack, or one per kind of DP defence where an
    attack meets several (each ending at the attack's points without DP), sorted by x."""
    out: list[tuple[str, list[CurvePoint]]] = []
    for attack in dict.fromkeys(p.attack for p in points):
        mine = [p for p in points if p.attack == attack and _finite(p.value)]
        plain = [p for p in mine if _x(p, edge) == edge]
        kinds = list(dict.fromkeys(p.protection for p in mine if _x(p, edge) != edge))
        groups = (
            [(attack, mine)]
            if len(kinds) <= 1
            else [
                (f"{attack} ({kind})", [p for p in mine if p.protection == kind] + plain)
                for kind in kinds
            ]
        )
        out += [(label, sorted(group, key=lambda p: _x(p, edge))) for label, group in groups]
    return out


def _metric_panel(
    ax: Axes,
    metric: str,
    points: Sequence[CurvePoint],
    lines: Sequence[tuple[str, list[CurvePoint]]],
    edge: float,
) -> None:
    """One metric's panel: its ``lines`` (:func:`curve_lines` of ``points``), thresholds."""
    labelled = False
    for index, (attack, mine) in enumerate(lines):
        if not mine:
            continue
        colour = f"C{index % 10}"
        xs = [_x(p, edge) for p in mine]
        ys = [p.value for p in mine]
        ax.plot(xs, ys, marker="o", color=colour, label=attack)
        with_ci = [p for p in mine if _finite(p.ci_low) and _finite(p.ci_high)]
        if with_ci:
            ax.errorbar(
                [_x(p, edge) for p in with_ci],
                [p.value for p in with_ci],
                yerr=[
                    [max(0.0, p.value - float(p.ci_low or 0.0)) for p in with_ci],
                    [max(0.0, float(p.ci_high or 0.0) - p.value) for p in with_ci],
                ],
                fmt="none",
                ecolor=colour,
                capsize=3,
            )
        base = [p for p in mine if _finite(p.baseline)]
        if base:
            ax.plot(
                [_x(p, edge) for p in base],
                [float(p.baseline or 0.0) for p in base],
                linestyle=":",
                marker="x",
                color=colour,
                linewidth=0.8,
                label="trivial baseline (dotted)" if not labelled else None,
            )
            labelled = True
    for threshold in sorted(
        {p.threshold for p in points if p.threshold is not None and math.isfinite(p.threshold)}
    ):
        ax.axhline(threshold, linestyle="--", color="grey", linewidth=0.9)
        ax.annotate(
            f"success threshold {threshold:g}",
            xy=(0.01, threshold),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            va="bottom",
        )
    ax.set_ylabel(metric)
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.24), ncol=2)


def _accuracy_panel(ax: Axes, points: Sequence[CurvePoint], edge: float) -> None:
    """One line per trained model: attacks whose points carry the same accuracies share one
    (the models the gradient and model-level rows report are the same DP-FedAvg runs)."""
    lines: dict[tuple[tuple[float, float], ...], list[str]] = {}
    for attack in dict.fromkeys(p.attack for p in points):
        pairs = tuple(
            sorted(
                {
                    (_x(p, edge), float(p.accuracy))
                    for p in points
                    if p.attack == attack and p.accuracy is not None and p.accuracy >= 0
                }
            )
        )
        if pairs:
            lines.setdefault(pairs, []).append(attack)
    for index, (pairs, attacks) in enumerate(lines.items()):
        more = f" (+{len(attacks) - 1} more)" if len(attacks) > 1 else ""
        ax.plot(
            [x for x, _ in pairs],
            [a for _, a in pairs],
            marker="s",
            color=f"C{index % 10}",
            label=f"{attacks[0]}{more}",
        )
    if lines:
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.24), ncol=1)
    else:
        ax.text(0.5, 0.5, "no accuracy reported", ha="center", transform=ax.transAxes)
    ax.set_ylim(0.0, 1.02)
    ax.set_ylabel("test accuracy of the trained model")


def privacy_utility_figure(family: Family, points: Sequence[CurvePoint]) -> MplFigure:
    """The figure of one family (module docstring): metric panels, then accuracy."""
    edge = no_dp_position([p.epsilon for p in points])
    # only attacks met by DP noise draw a curve: one measured only without noise (e.g. a
    # plaintext control, whether a round aborted) is no privacy-utility trade-off
    noised = {p.attack for p in points if _x(p, edge) != edge}
    if noised:
        points = [p for p in points if p.attack in noised]
    metrics = list(dict.fromkeys(p.metric for p in points if _x(p, edge) != edge)) or list(
        dict.fromkeys(p.metric for p in points)
    )
    panels = {m: [p for p in points if p.metric == m] for m in metrics}
    lines = {m: curve_lines(mine, edge) for m, mine in panels.items()}
    entries = max(len(found) for found in lines.values())
    fig = MplFigure(figsize=(4.2 * (len(metrics) + 1), 4.0 + 0.09 * entries))
    axes = fig.subplots(1, len(metrics) + 1, squeeze=False)[0]
    ticks = _decade_ticks(points, edge)
    labels = [f"$10^{{{round(math.log10(t))}}}$" for t in ticks] + [NO_DP_LABEL]
    for ax, metric in zip(axes, metrics, strict=False):
        _metric_panel(ax, metric, panels[metric], lines[metric], edge)
    _accuracy_panel(axes[-1], points, edge)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks([*ticks, edge], labels)
        ax.set_xlim(ticks[0] / 2 if ticks else edge / 20, edge * 2)
        ax.minorticks_off()
        ax.axvline(edge / math.sqrt(10.0), linestyle=":", color="lightgrey", linewidth=0.8)
        ax.set_xlabel(epsilon_label(points))
        ax.grid(True, linewidth=0.3)
    fig.suptitle(f"Privacy-utility: {family.value.replace('_', ' ')}", fontsize=10)
    fig.tight_layout()
    return fig


def save_privacy_utility_figures(rows: Sequence[Row], out_dir: str | Path) -> dict[Family, Path]:
    """Write ``privacy_utility_<family>.png`` into ``out_dir`` for each family with DP rows.

    Returns:
        The path written for each family (families without a DP row get none).
    """
    out = Path(out_dir)
    written: dict[Family, Path] = {}
    for family, points in privacy_utility_points(rows).items():
        path = out / curve_file_name(family)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig = privacy_utility_figure(family, points)
        FigureCanvasAgg(fig)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        written[family] = path
    return written
