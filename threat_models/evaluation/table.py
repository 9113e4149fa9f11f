"""The summary table of an evaluation: the primary rows, grouped by family.

:func:`summary_table` prints what ``secagg evaluate`` shows (a text table that fits in
:data:`TABLE_WIDTH` columns) or the markdown table of the report; :data:`VERDICT_LEGEND`
says what its two verdict columns mean (over several seeds, decided on the interval by
:data:`~threat_models.evaluation.seeds.INTERVAL_RULE`), :data:`EPSILON_LEGEND` what its
epsilon column means and :func:`seeds_legend` what its values are (means over the seeds,
shown ``mean ±half`` of their 90% interval: each end a one-sided 95% bound).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

from threat_models.evaluation.matrix import EvaluationResult
from threat_models.evaluation.rows import Family, Outcome, PrivacyLevel
from threat_models.evaluation.scoring import DELTA
from threat_models.evaluation.seeds import CONFIDENCE, INTERVAL_RULE

__all__ = [
    "TABLE_WIDTH",
    "METRIC_LABELS",
    "VERDICT_LEGEND",
    "EPSILON_LEGEND",
    "seeds_legend",
    "summary_table",
]


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf"
    if float(x).is_integer() and abs(x) < 1e6:
        return str(int(x))
    if abs(x) < 1e-3 or abs(x) >= 1e4:
        return f"{x:.2e}"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


#: Width of the terminal table (columns).
TABLE_WIDTH = 100

#: Short names of the metrics, for the terminal table.
METRIC_LABELS: Mapping[str, str] = {
    "best_psnr_db": "best PSNR (dB)",
    "psnr_db": "mean PSNR (dB)",
    "images_above_20db": "images >= 20 dB",
    "images_above_30db": "images >= 30 dB",
    "auc": "AUC",
    "tpr_at_1pct_fpr": "TPR at 1% FPR",
    "tpr_at_0.1pct_fpr": "TPR at 0.1% FPR",
    "round_aborted": "round aborted",
    "victim_update_max_error": "error on victim",
    "residual_noise_std": "residual noise std",
    "psnr_monotone_in_noise": "PSNR falls with noise",
    "epsilon_lower_bound": "eps lower bound",
}

#: What the two verdict columns mean: one paragraph per column.
VERDICT_LEGEND: tuple[str, str] = (
    "attack: succeeded = the attack met its success criterion (an image at PSNR >= 20 dB, "
    "the best target deciding for every row that attacks several, controls included; "
    "membership AUC >= 0.6 or TPR >= 3% at 1% FPR; one client's update isolated within two "
    "quantisation steps); stopped = it did not. "
    + INTERVAL_RULE[0].upper()
    + INTERVAL_RULE[1:]
    + ".",
    "as expected: yes = the outcome the harness requires; NO (regression) = a defense let "
    "through an attack it must stop; NO (control failed) = a positive control did not "
    "succeed, so the evaluation proves nothing; - = no claim in this cell (intermediate noise).",
)

#: What the epsilon column means.
EPSILON_LEGEND = (
    f"epsilon: at delta = {DELTA:g}, per client (user-level) unless the row says otherwise, "
    "of the row's DP noise composed over the releases the attack observes, without "
    "amplification by sampling; - = no DP noise in the row."
)


def seeds_legend(seeds: Sequence[int]) -> str:
    """What the value column shows for a run over ``seeds``."""
    if len(seeds) == 1:
        return f"values: one seed ({seeds[0]}), no interval; verdicts as the seed's."
    return (
        f"values: means over {len(seeds)} seeds ({seeds[0]} to {seeds[-1]}) shown as "
        f"mean ±half of their {CONFIDENCE:.0%} Student-t interval (each end a one-sided "
        f"{(1 + CONFIDENCE) / 2:.0%} bound; ±0: every seed agreed); "
        "verdicts decided on the interval as the attack column says."
    )


def _value(value: float, low: float | None, high: float | None) -> str:
    """A row's value, with the half-width of its interval when it has one."""
    if low is None or high is None:
        return _fmt(value)
    half = 0.0 if low == high else (high - low) / 2
    return f"{_fmt(value)} ±{_fmt(half)}"


def _epsilon(epsilon: float | None, level: PrivacyLevel | None) -> str:
    """The epsilon of a row, its level marked when it is not per client."""
    shown = _fmt(epsilon)
    if epsilon is None or level in (None, PrivacyLevel.USER):
        return shown
    return f"{shown} ({level.value})"


def _summary_lines(result: EvaluationResult) -> list[tuple[Family, tuple[str, ...]]]:
    out: list[tuple[Family, tuple[str, ...]]] = []
    for r in result.rows:
        if not r.primary:
            continue
        attack = r.attack + (" [control]" if r.positive_control else "")
        out.append(
            (
                r.family,
                (
                    attack,
                    r.defense,
                    r.metric,
                    _value(r.value, r.ci_low, r.ci_high),
                    _fmt(r.baseline),
                    _epsilon(r.epsilon, r.epsilon_level),
                    r.outcome.value,
                    r.expectation.value,
                ),
            )
        )
    return out


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    return textwrap.wrap(text, width, subsequent_indent=indent, break_on_hyphens=False) or [""]


def _block(cells: Sequence[str], widths: Sequence[int], right: Sequence[bool]) -> list[str]:
    """One table row as lines: every cell wrapped to its column, columns side by side.

    Continuation lines of the first column are indented, so a wrapped name never reads as
    the next row.
    """
    wrapped = [
        _wrap(c, w, "  " if i == 0 else "")
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    ]
    height = max(len(w) for w in wrapped)
    lines = []
    for i in range(height):
        parts = [
            (w[i] if i < len(w) else "").rjust(width)
            if r
            else (w[i] if i < len(w) else "").ljust(width)
            for w, width, r in zip(wrapped, widths, right, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return lines


def summary_table(
    result: EvaluationResult, *, markdown: bool = False, width: int = TABLE_WIDTH
) -> str:
    """The primary rows as a text table grouped by family (or one markdown table).

    The text table fits in ``width`` columns (100 by default): each row is the attack with
    its figures (over several seeds the value reads ``mean ±half`` of its 90% interval,
    :func:`seeds_legend`), its epsilon (:data:`EPSILON_LEGEND`) and its verdicts, then the
    defense on
    an indented line below it; long texts wrap. Two verdict columns: ``attack``
    (``succeeded`` / ``stopped``) and ``as expected`` (``yes``, ``NO (regression)``,
    ``NO (control failed)``, ``-`` for no claim); the legend (:data:`VERDICT_LEGEND`)
    follows the table.
    """
    lines = _summary_lines(result)
    if markdown:
        header = (
            "family",
            "attack",
            "defense",
            "metric",
            "value",
            "baseline",
            "epsilon",
            "attack result",
            "as expected",
        )
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for fam, (attack, defense, metric, value, baseline, eps, outcome, expectation) in lines:
            shown = f"**{expectation}**" if expectation.startswith("NO") else expectation
            cells = (fam.value, attack, defense, metric, value, baseline, eps, outcome, shown)
            out.append("| " + " | ".join(cells).replace("\n", " ") + " |")
        return "\n".join(out)

    right = (False, False, True, True, True, False, False)
    fixed = [
        max([len("metric")] + [min(len(METRIC_LABELS.get(c[2], c[2])), 15) for _, c in lines]),
        max([len("value")] + [min(len(c[3]), 12) for _, c in lines]),
        max([len("baseline")] + [len(c[4]) for _, c in lines]),
        max([len("epsilon")] + [min(len(c[5]), 10) for _, c in lines]),
        len(Outcome.SUCCEEDED.value),
        len("(regression)"),
    ]
    attack_width = max(20, width - sum(fixed) - 2 * len(fixed))
    widths = [attack_width, *fixed]
    out = _block(
        ("attack", "metric", "value", "baseline", "epsilon", "attack", "as expected"),
        widths,
        right,
    )
    out += ["    defense"]
    current: Family | None = None
    for fam, (attack, defense, metric, value, baseline, eps, outcome, expectation) in lines:
        if fam is not current:
            out.append(f"-- {fam.value} ".ljust(width, "-"))
            current = fam
        out += _block(
            (
                attack,
                METRIC_LABELS.get(metric, metric.replace("_", " ")),
                value,
                baseline,
                eps,
                outcome,
                expectation,
            ),
            widths,
            right,
        )
        out += ["    " + text for text in _wrap(f"defense: {defense}", width - 4, "  ")]
    return "\n".join(out)
