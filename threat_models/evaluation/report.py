"""Report of an evaluation: image grids, plots and a markdown summary.

Everything is drawn with matplotlib's Agg canvas directly (no global backend switch, no
display needed). :func:`write_report` lays out ``OUT/``::

    report.md              summary, what secure aggregation alone does not stop, tables
    results.json           every row (same content as ``secagg evaluate --json``)
    privacy_utility_<family>.png
                           attack success against epsilon, model accuracy beside
                           (:mod:`threat_models.evaluation.curves`), per family with DP rows
    images/<panel>.png     originals (top) and reconstructions (bottom) with their PSNR
    plots/<figure>.png     PSNR against signal-to-noise ratio, membership ROC curves
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from secagg.errors import InvalidParameterError, raise_missing_extra
from threat_models.attacks.metrics import psnr
from threat_models.evaluation.audit_rule import AUDIT_RULE
from threat_models.evaluation.curves import CURVES_GUIDE, save_privacy_utility_figures
from threat_models.evaluation.matrix import AUDIT_CELL, EvaluationResult
from threat_models.evaluation.rows import Family, Figure, ImagePanel, Protection, Row
from threat_models.evaluation.scoring import VERDICT_RULE
from threat_models.evaluation.table import (
    EPSILON_LEGEND,
    VERDICT_LEGEND,
    seeds_legend,
    summary_table,
)
from threat_models.evaluation.utility import ACCURACY_RULE

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure
except ImportError as exc:  # the core install has no matplotlib
    raise_missing_extra(exc, "eval", "threat_models.evaluation.report")

__all__ = [
    "image_labels",
    "save_image_grid",
    "save_figure",
    "write_report",
    "markdown_report",
    "WHY_NOT_STOPPED",
]

WHY_NOT_STOPPED: dict[str, str] = {
    "closed_form per ReLU neuron": (
        "A first-layer ReLU neuron that fires for exactly one example of the whole cohort "
        "isolates that example in the *sum*: dW_i / db_i is the image. Masking hides each "
        "update, not what the sum itself encodes. Stopped by DP noise on the updates."
    ),
    "dlg joint (all n)": (
        "When n times the input size is below the number of parameters, the sum of the n "
        "gradients determines all n inputs, and joint gradient matching finds them. Stopped by "
        "DP noise, by larger cohorts or multi-step local training (n D > P)."
    ),
    "Sybil": (
        "A server that runs every other client subtracts their known updates from the sum. "
        "No masking protocol can stop it, and the minimum aggregate size counts Sybils as "
        "clients. Distributed DP sized for n honest clients leaves only the target's own "
        "noise share (std z C / sqrt(n)). Stopped only by noise each client adds itself, sized "
        "for the colluders it must tolerate (local DP when all others may be Sybils), or by "
        "an identity layer that limits Sybils."
    ),
    "trap/imprint weights": (
        "Every client receives the same malicious model, so model-hash consistency checks pass; "
        "its first layer bins examples by brightness and a bin with one example of the whole "
        "aggregate yields it exactly. Stopped by DP noise, or by clients that refuse models they "
        "cannot verify (e.g. fixed, audited architectures and initialisations)."
    ),
    "disaggregation across rounds": (
        "Every round's aggregate is large enough, but overlapping cohorts over many rounds give "
        "A = P U, which least squares inverts. Stopped by DP noise per round with privacy loss "
        "composed over the rounds (and by not letting the server choose or learn the cohorts)."
    ),
    "model inconsistency": (
        "Secure aggregation alone sums whatever the clients computed; if the server sends the "
        "target the real model and everyone else a model with zero first-layer gradient, the "
        "sum is the target's update. Stopped by binding the model hash into the signed keys "
        "(hardened protocol) or by DP noise."
    ),
    "loss threshold": (
        "Membership inference attacks the released model, which secure aggregation does not "
        "change. Stopped by sample-level DP (DP-SGD)."
    ),
    "LiRA": (
        "Membership inference attacks the released model, which secure aggregation does not "
        "change. Stopped by sample-level DP (DP-SGD)."
    ),
}


def _save(fig: MplFigure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


NO_CANDIDATE = "no candidate"


def image_labels(panel: ImagePanel) -> tuple[str, ...]:
    """The label under each reconstruction of a grid.

    The PSNR (dB) of the reconstruction *as shown* against the original above it, so that a
    label can never contradict its picture; ``"no candidate"`` where the attack produced
    none for that original (``panel.unmatched``; the image is left blank).
    """
    count = int(panel.originals.shape[0])
    if count == 0 or panel.reconstructions.shape[0] != count:
        raise InvalidParameterError("a panel needs as many reconstructions as originals")
    if panel.unmatched and len(panel.unmatched) != count:
        raise InvalidParameterError("a panel's unmatched flags need one entry per original")
    labels = []
    for j in range(count):
        if panel.unmatched and panel.unmatched[j]:
            labels.append(NO_CANDIDATE)
        else:
            labels.append(f"{psnr(panel.reconstructions[j], panel.originals[j]):.1f} dB")
    return tuple(labels)


def save_image_grid(panel: ImagePanel, path: Path) -> Path:
    """Originals on the top row, reconstructions below, each labelled by :func:`image_labels`."""
    labels = image_labels(panel)
    count = len(labels)
    fig = MplFigure(figsize=(1.3 * count + 0.8, 3.0))
    axes = fig.subplots(2, count, squeeze=False)
    for j in range(count):
        for i, (images, label) in enumerate(
            ((panel.originals, "original"), (panel.reconstructions, "attack"))
        ):
            ax = axes[i][j]
            ax.imshow(
                images[j, 0].numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest"
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label)
        axes[1][j].set_title(labels[j], fontsize=8)
    fig.suptitle(panel.title, fontsize=9)
    return _save(fig, path)


def save_figure(figure: Figure, path: Path) -> Path:
    """A line plot: one line per series, dashed reference lines, optional chance diagonal."""
    fig = MplFigure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    for series in figure.series:
        ax.plot(series.x, series.y, marker="o" if len(series.x) < 20 else None, label=series.label)
    for label, value in figure.hlines:
        ax.axhline(value, linestyle="--", linewidth=0.8, color="grey")
        ax.annotate(
            label, xy=(0.01, value), xycoords=("axes fraction", "data"), fontsize=7, va="bottom"
        )
    if figure.diagonal:
        ax.plot(
            [1e-4, 1.0], [1e-4, 1.0], linestyle=":", color="black", linewidth=0.8, label="chance"
        )
    if figure.logx:
        ax.set_xscale("log")
    if figure.logy:
        ax.set_yscale("log")
    ax.set_xlabel(figure.xlabel)
    ax.set_ylabel(figure.ylabel)
    ax.set_title(figure.title, fontsize=9)
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"


def _privacy(row: Row) -> str:
    """``epsilon (level, delta)`` of a row under DP noise, ``-`` without."""
    if row.epsilon is None:
        return "-"
    level = row.epsilon_level.value if row.epsilon_level is not None else "?"
    return f"{_fmt(row.epsilon)} ({level}, delta={row.delta:g})"


def _not_stopped_section(result: EvaluationResult) -> list[str]:
    lines = ["## What secure aggregation alone does NOT stop", ""]
    found = result.not_stopped_by_secure_aggregation()
    if not found:
        lines += ["Every attack on the secure sum failed in this run.", ""]
        return lines
    seen: set[str] = set()
    for row in found:
        key = next((k for k in WHY_NOT_STOPPED if row.attack.startswith(k)), row.attack)
        privacy = f", at epsilon {_privacy(row)}" if row.epsilon is not None else ""
        lines.append(
            f"- **{row.attack}** against *{row.defense}*: {row.metric} = {_fmt(row.value)} "
            f"(baseline {_fmt(row.baseline)}){privacy}."
        )
        if key not in seen and key in WHY_NOT_STOPPED:
            lines.append(f"  {WHY_NOT_STOPPED[key]}")
            seen.add(key)
    sybil = [r for r in result.rows if r.attack == "Sybil" and r.metric == "residual_noise_std"]
    for row in sybil:
        if row.baseline:
            lines.append(
                "- Sybils vs distributed DP: the noise left on the target's update has std "
                f"{_fmt(row.value)} against the intended {_fmt(row.baseline)} "
                f"(ratio {row.value / row.baseline:.3f}). {row.note}."
            )
    lines.append("")
    return lines


def _hardening_section(result: EvaluationResult) -> list[str]:
    """Attacks that masking alone lets through and the hardened protocol stops."""
    lines = ["## Stopped by the hardening, not by masking", ""]
    attacks = []
    for row in result.rows:
        if row.family not in (Family.PROTOCOL_LEVEL, Family.MODEL_LEVEL) or row.attack in attacks:
            continue
        same = [r for r in result.rows if r.attack == row.attack and r.primary]
        baseline = [
            r
            for r in same
            if r.positive_control and r.succeeded and r.protection is Protection.UNHARDENED
        ]
        hardened = [
            r
            for r in same
            if not r.positive_control
            and not r.succeeded
            and r.protection is Protection.SECURE_AGGREGATION
        ]
        if baseline and hardened:
            attacks.append(row.attack)
            lines.append(
                f"- **{row.attack}**: succeeds against *{baseline[0].defense}*, fails against "
                f"*{hardened[0].defense}*: {hardened[0].note}."
            )
    return lines + [""] if attacks else []


def _rows_table(rows: Sequence[Row]) -> list[str]:
    out = [
        "| attack | defense | metric | value | baseline | epsilon | attack result | as expected "
        "| note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        expectation = r.expectation.value
        shown = f"**{expectation}**" if not r.as_expected else expectation
        out.append(
            f"| {r.attack}{' (control)' if r.positive_control else ''} | {r.defense} | "
            f"{r.metric} | {_fmt(r.value)} | "
            f"{_fmt(r.baseline)} ({r.baseline_name}) | {_privacy(r)} | {r.outcome.value} | "
            f"{shown} | {r.note} |"
        )
    return out


def _audit_section(result: EvaluationResult, rows: Sequence[Row]) -> list[str]:
    """The one-run lower bound next to the accountant's epsilon, one line per audited run."""
    lines = [
        "Canary clients (each included with probability 1/2) take part in DP-FedAvg rounds "
        "under each DP defence; the one-run audit (Steinke, Nasr and Jagielski 2023) of "
        "their scores gives an epsilon lower bound, shown next to the epsilon the privacy "
        "ledger's accountant states for the same run (user level). For Opacus DP-SGD, "
        "canary *examples* (dirac inputs, each included with probability 1/2) are trained "
        "into a logistic regression on the digits, and their bound is set against Opacus's "
        f"PRV epsilon (sample level). Rule: {AUDIT_RULE}.",
        "",
        "| defense | lower bound | accountant epsilon | bound <= accountant | as expected |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        within = "yes" if not r.succeeded else "no"
        shown = r.expectation.value if r.as_expected else f"**{r.expectation.value}**"
        control = " (control)" if r.positive_control else ""
        lines.append(
            f"| {r.defense}{control} | {_fmt(r.value)} | {_fmt(r.baseline)} | {within} | {shown} |"
        )
    seconds = result.seconds.get(AUDIT_CELL)
    if seconds is not None:
        lines += ["", f"The audit cell took {seconds:.1f} s."]
    return lines + [""]


def _curves_section(curves: Sequence[tuple[Family, str]]) -> list[str]:
    """The privacy-utility figures, with how to read them and where accuracy comes from."""
    if not curves:
        return []
    lines = [
        "## Privacy-utility curves",
        "",
        CURVES_GUIDE,
        "",
        f"Where the accuracy comes from: {ACCURACY_RULE}.",
        "",
    ]
    for family, path in curves:
        name = family.value.replace("_", " ")
        lines += [f"**{name}**", "", f"![privacy-utility curve: {name}]({path})", ""]
    return lines


def markdown_report(
    result: EvaluationResult,
    *,
    images: Sequence[tuple[ImagePanel, str]] = (),
    plots: Sequence[tuple[Figure, str]] = (),
    curves: Sequence[tuple[Family, str]] = (),
) -> str:
    """The markdown text of the report (paths are relative to the report's folder).

    ``curves`` are the privacy-utility figures written, one per family, with their paths.
    """
    cfg = result.config
    total = sum(result.seconds.values())
    lines = [
        "# Attack and defense evaluation",
        "",
        f"Mode: {'quick' if cfg.quick else 'full'}; seed {cfg.seed}; "
        f"secure sums computed by the {result.aggregator}; "
        f"{total:.0f} s of compute.",
        "",
        "Every attack first runs as a **positive control** (on a plaintext update, or "
        "against the deliberately "
        "unhardened baseline) where it must succeed. "
        + (
            "All positive controls succeeded."
            if result.controls_passed
            else "**Some positive control failed or a cell did not run: this evaluation "
            "proves nothing about the defenses it lists.**"
        ),
        "",
        "Success criteria: an image is leaked at PSNR >= 20 dB (recognisable; 30 dB is "
        "visually exact), after matching "
        f"reconstructions to originals; one verdict rule: {VERDICT_RULE}; "
        "membership inference succeeds at AUC >= 0.6 or TPR >= 3% at 1% FPR; a "
        "protocol-level attack succeeds when "
        "the server's estimate of one client's update is within two quantisation steps "
        "of it. Baselines (what an "
        "attacker gets for free) are shown next to every number.",
        "",
        "Every row under DP noise states its privacy: "
        + EPSILON_LEGEND.removeprefix("epsilon: ")
        + " Epsilon is the exact Gaussian-DP figure of the noise multiplier z "
        "(composed over k releases as z / sqrt(k)).",
        "",
    ]
    if result.errors:
        lines += (
            ["## Cells that did not run", ""]
            + [f"- {name}: `{msg}`" for name, msg in result.errors.items()]
            + [""]
        )
    unexpected = result.unexpected
    if unexpected:
        lines += ["## Unexpected verdicts", ""] + _rows_table(unexpected) + [""]
    lines += _not_stopped_section(result)
    lines += _hardening_section(result)
    lines += ["## Summary", "", summary_table(result, markdown=True), ""]
    legends = (*VERDICT_LEGEND, EPSILON_LEGEND, seeds_legend(result.seeds))
    lines += [f"- {paragraph}" for paragraph in legends] + [""]
    lines += _curves_section(curves)
    for family in Family:
        fam_rows = [r for r in result.rows if r.family is family]
        if not fam_rows:
            continue
        lines += [f"## {family.value.replace('_', ' ')}", ""]
        settings = sorted({r.setting for r in fam_rows})
        lines += ["Settings:", ""] + [f"- {s}" for s in settings] + [""]
        if family is Family.EMPIRICAL_AUDIT:
            lines += _audit_section(result, fam_rows)
        lines += _rows_table(fam_rows) + [""]
        for figure, path in plots:
            if any(figure.name.startswith(p) for p in _FIGURES_OF[family]):
                lines += [f"![{figure.title}]({path})", ""]
        for panel, path in images:
            if any(panel.name.startswith(p) for p in _PANELS_OF[family]):
                lines += [f"**{panel.title}**", "", f"![{panel.title}]({path})", ""]
    lines += ["## Time per cell", "", "| cell | seconds |", "|---|---|"]
    lines += [f"| {name} | {sec:.1f} |" for name, sec in result.seconds.items()]
    return "\n".join(lines) + "\n"


_PANELS_OF: dict[Family, tuple[str, ...]] = {
    Family.GRADIENT_INVERSION: ("plaintext_", "sum_", "dp_"),
    Family.MEMBERSHIP: (),
    Family.MODEL_LEVEL: ("model_inconsistency", "sybil", "trap", "disaggregation"),
    Family.PROTOCOL_LEVEL: ("protocol_",),
    Family.EMPIRICAL_AUDIT: (),
}
_FIGURES_OF: dict[Family, tuple[str, ...]] = {
    Family.GRADIENT_INVERSION: ("psnr_vs_noise",),
    Family.MEMBERSHIP: ("roc_",),
    Family.MODEL_LEVEL: (),
    Family.PROTOCOL_LEVEL: (),
    Family.EMPIRICAL_AUDIT: (),
}


def write_report(result: EvaluationResult, out_dir: str | Path) -> Path:
    """Write images, plots, ``results.json`` and ``report.md`` into ``out_dir``.

    Returns:
        The path of ``report.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = [(panel, f"images/{panel.name}.png") for panel in result.panels]
    plots = [(figure, f"plots/{figure.name}.png") for figure in result.figures]
    for panel, rel in images:
        save_image_grid(panel, out / rel)
    for figure, rel in plots:
        save_figure(figure, out / rel)
    written = save_privacy_utility_figures(result.rows, out)
    curves = [(family, path.name) for family, path in written.items()]
    (out / "results.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    report = out / "report.md"
    report.write_text(markdown_report(result, images=images, plots=plots, curves=curves))
    return report
