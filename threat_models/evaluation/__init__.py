"""The attack x defense evaluation matrix behind ``secagg evaluate``.

Each *cell* runs one family of attacks against one or more defenses and returns rows::

    {"family", "attack", "defense", "setting", "metric", "value", "baseline",
     "baseline_name", "succeeded", "expected", "positive_control", "primary", "note"}

``succeeded`` is the attack's verdict in that cell (the same on every metric row of the
cell); ``expected`` is what an honest harness must observe (``True``: the attack must
succeed, ``False``: the defense must stop it, ``None``: no claim, e.g. intermediate noise
levels). Every attack first runs as a *positive control* -- on plaintext, or against the
deliberately unhardened baseline -- where it must succeed; an evaluation whose controls
fail proves nothing, and :meth:`EvaluationResult.controls_passed` says so.

Success criteria (stated once, used everywhere):

* image reconstruction: an image counts as leaked at PSNR >= 20 dB (recognisable); a
  single-target attack succeeds when its target is leaked, a multi-image attack when at
  least one image is, a noise sweep when the *mean* over targets reaches 20 dB;
* membership inference: AUC >= 0.6 or TPR >= 3% at 1% FPR (three times chance);
* isolating an update (Sybils, protocol-level attacks): the server's estimate of one
  client's update is within the quantisation error of the truth (or, under DP, within
  the target's own noise share).

Secure sums are computed by an :data:`~threat_models.attacks.model_level.Aggregator`: the
real protocol (``protocols.simulate``) when it is available, else the sum itself (what
secure aggregation reveals by definition). Rows say which one ran. DP noise comes from the
:mod:`dp` mechanisms themselves (central Gaussian, distributed discrete Gaussian, Opacus
client), drawn from their CSPRNG, so DP cells vary slightly from run to run; everything
else is seeded by ``EvaluationConfig.seed``.
"""

from __future__ import annotations

import enum
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from secagg.errors import InvalidParameterError, SecAggError, raise_missing_extra
from secagg.outputs import NON_FINITE_KEY, strict_json
from threat_models.attacks import gradient_inversion as gi
from threat_models.attacks import membership as mia
from threat_models.attacks import model_level as ml
from threat_models.attacks.metrics import (
    EXACT_DB,
    RECOGNISABLE_DB,
    Baselines,
    Matching,
    baselines,
    match_reconstructions,
    psnr_matrix,
)
from threat_models.data import (
    Activation,
    DatasetName,
    ImageData,
    load_dataset,
    make_mlp,
    num_parameters,
    split_indices,
)

try:
    import torch
    from torch import nn
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.evaluation")

__all__ = [
    "Family",
    "Outcome",
    "Expectation",
    "Row",
    "ImagePanel",
    "Series",
    "Figure",
    "CellOutput",
    "EvaluationConfig",
    "EvaluationContext",
    "EvaluationResult",
    "Cell",
    "CELLS",
    "run_evaluation",
    "summary_table",
    "VERDICT_LEGEND",
    "TABLE_WIDTH",
]

F64 = npt.NDArray[np.float64]


class Family(str, enum.Enum):
    """Attack families of the matrix."""

    GRADIENT_INVERSION = "gradient_inversion"
    MEMBERSHIP = "membership_inference"
    MODEL_LEVEL = "malicious_server_model"
    PROTOCOL_LEVEL = "malicious_server_protocol"


class Outcome(str, enum.Enum):
    """What the attack did in a cell, by the success criteria of the module docstring."""

    SUCCEEDED = "succeeded"
    STOPPED = "stopped"


class Expectation(str, enum.Enum):
    """Whether a cell's outcome is the one an honest harness must observe."""

    MET = "yes"
    #: a defense let through an attack it must stop
    REGRESSION = "NO (regression)"
    #: a positive control did not succeed: the evaluation proves nothing
    CONTROL_FAILED = "NO (control failed)"
    #: no claim in this cell (e.g. intermediate noise levels)
    NO_CLAIM = "-"


@dataclass(frozen=True)
class Row:
    """One number of the matrix (see the module docstring for the fields' meaning)."""

    family: Family
    attack: str
    defense: str
    setting: str
    metric: str
    value: float
    baseline: float | None
    baseline_name: str
    succeeded: bool
    expected: bool | None
    positive_control: bool = False
    primary: bool = True
    note: str = ""

    @property
    def as_expected(self) -> bool:
        """Whether the verdict matches the expectation (True when there is none)."""
        return self.expected is None or self.expected == self.succeeded

    @property
    def outcome(self) -> Outcome:
        """``succeeded`` or ``stopped``: the attack's verdict in words."""
        return Outcome.SUCCEEDED if self.succeeded else Outcome.STOPPED

    @property
    def expectation(self) -> Expectation:
        """``yes``, ``NO (regression)``, ``NO (control failed)`` or ``-`` (no claim)."""
        if self.expected is None:
            return Expectation.NO_CLAIM
        if self.as_expected:
            return Expectation.MET
        return Expectation.CONTROL_FAILED if self.expected else Expectation.REGRESSION

    def _fields(self) -> dict[str, Any]:
        out = asdict(self)
        out["family"] = self.family.value
        return out

    def to_json(self) -> dict[str, Any]:
        """The row as strict JSON (the rule of :mod:`secagg.outputs`: a non-finite
        ``value`` or ``baseline`` is ``null``, named under ``"non_finite"``)."""
        return _strict_document(self._fields())


def _strict_document(document: Mapping[str, Any]) -> dict[str, Any]:
    clean, replaced = strict_json(document)
    out = dict(clean) if isinstance(clean, dict) else {}
    if replaced:
        out[NON_FINITE_KEY] = replaced
    return out


@dataclass(frozen=True)
class ImagePanel:
    """Originals next to what an attack reconstructed (one image grid in the report).

    Attributes:
        name: file stem, unique in a run.
        title: caption.
        originals: ``(N, C, H, W)`` in ``[0, 1]``.
        reconstructions: ``(N, C, H, W)``, matched to the originals (a blank image where
            the attack produced no candidate for an original).
        psnr_db: per original, the PSNR of its reconstruction as scored by the cell (0 for
            an original without a candidate).
        unmatched: per original, whether the attack produced no candidate for it (empty:
            every original has one). Image grids label these "no candidate" instead of a
            PSNR, and every other image with the PSNR of the picture shown.
    """

    name: str
    title: str
    originals: torch.Tensor
    reconstructions: torch.Tensor
    psnr_db: tuple[float, ...]
    unmatched: tuple[bool, ...] = ()


@dataclass(frozen=True)
class Series:
    """One line of a figure."""

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]


@dataclass(frozen=True)
class Figure:
    """A line plot: PSNR against noise, or ROC curves.

    Attributes:
        name: file stem.
        title: caption.
        xlabel, ylabel: axis labels.
        series: the lines.
        hlines: labelled horizontal reference lines (baselines).
        logx, logy: log-scaled axes.
        diagonal: draw ``y = x`` (chance line of an ROC plot).
    """

    name: str
    title: str
    xlabel: str
    ylabel: str
    series: tuple[Series, ...]
    hlines: tuple[tuple[str, float], ...] = ()
    logx: bool = False
    logy: bool = False
    diagonal: bool = False


@dataclass(frozen=True)
class CellOutput:
    """What one cell returns."""

    rows: tuple[Row, ...]
    panels: tuple[ImagePanel, ...] = ()
    figures: tuple[Figure, ...] = ()


@dataclass(frozen=True)
class EvaluationConfig:
    """Size of the evaluation.

    Attributes:
        quick: a few minutes on a 2-core CPU, every family with its positive control.
        seed: seeds data selection, model initialisation and simulation randomness.
        threads: torch intra-op threads while the evaluation runs.
        families: which families to run (default all).
    """

    quick: bool = False
    seed: int = 0
    threads: int = 1
    families: frozenset[Family] = frozenset(Family)

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise InvalidParameterError("threads must be positive")
        if not self.families or not all(isinstance(f, Family) for f in self.families):
            raise InvalidParameterError("families must be a non-empty set of Family")

    # sizes -------------------------------------------------------------------
    @property
    def inversion_datasets(self) -> tuple[DatasetName, ...]:
        return (DatasetName.DIGITS,) if self.quick else (DatasetName.DIGITS, DatasetName.MNIST)

    @property
    def targets(self) -> int:
        return 2 if self.quick else 4

    @property
    def cohort(self) -> int:
        return 8

    @property
    def dlg_iterations(self) -> int:
        return 100 if self.quick else 300

    @property
    def ig_iterations(self) -> int:
        return 300 if self.quick else 600

    @property
    def snr_levels(self) -> tuple[float, ...]:
        return (10.0, 3.0, 1.0, 0.3, 0.1, 0.03) if self.quick else (30.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01)

    @property
    def noise_targets(self) -> int:
        return 3 if self.quick else 6

    @property
    def mia_population(self) -> int:
        return 1000

    @property
    def mia_shadows(self) -> int:
        return 8 if self.quick else 16

    @property
    def mia_noise_multipliers(self) -> tuple[float, ...]:
        return (2.0,) if self.quick else (1.0, 2.0)


class EvaluationContext:
    """Shared state of one run: configuration, data sets, the secure-sum implementation."""

    def __init__(self, config: EvaluationConfig, aggregator: ml.Aggregator | None = None, aggregator_name: str | None = None) -> None:
        self.config = config
        self._datasets: dict[DatasetName, ImageData] = {}
        if aggregator is None:
            aggregator, aggregator_name = default_aggregator()
        self.aggregator = aggregator
        self.aggregator_name = aggregator_name or "custom"

    def dataset(self, name: DatasetName) -> ImageData:
        if name not in self._datasets:
            self._datasets[name] = load_dataset(name)
        return self._datasets[name]

    def rng(self, salt: int) -> np.random.Generator:
        """A simulation generator for one cell (independent streams per ``salt``)."""
        return np.random.default_rng([self.config.seed, salt])

    def seed_bytes(self, salt: int) -> bytes:
        """A 32-byte public seed (e.g. a round's rotation seed) derived from the run's seed."""
        return int(self.config.seed * 1_000_003 + salt).to_bytes(32, "big", signed=False)


def default_aggregator() -> tuple[ml.Aggregator, str]:
    """The real protocol when ``protocols.simulate`` exists, else the ideal sum."""
    try:
        from threat_models.attacks.protocol_level import protocol_aggregator
    except ImportError:  # pragma: no cover - protocols not installed
        return ml.plain_secure_sum, "ideal sum"
    found = protocol_aggregator()
    if found is None:
        return ml.plain_secure_sum, "ideal sum"
    return found


Cell = tuple[str, Family, Callable[[EvaluationContext], CellOutput]]


# ----------------------------------------------------------------------------- helpers


def _describe(model: nn.Module, data: ImageData, activation: Activation, hidden: int) -> str:
    return f"{data.name.value}, MLP {data.input_size}-{hidden}-{data.num_classes} {activation.value}, P={num_parameters(model)}"


def _pick(data: ImageData, count: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.as_tensor(rng.choice(len(data), size=count, replace=False))
    return data.images[idx], data.labels[idx]


def _gradient_rows(
    *,
    attack: str,
    defense: str,
    setting: str,
    psnrs: Sequence[float],
    base: Baselines,
    succeeded: bool,
    expected: bool | None,
    positive_control: bool = False,
    label_acc: float | None = None,
    note: str = "",
    multi: bool = False,
    family: Family = Family.GRADIENT_INVERSION,
) -> list[Row]:
    values = np.asarray(psnrs, dtype=np.float64)
    common: dict[str, Any] = {
        "family": family,
        "attack": attack,
        "defense": defense,
        "setting": setting,
        "succeeded": succeeded,
        "expected": expected,
        "positive_control": positive_control,
    }
    rows = [
        Row(metric="psnr_db", value=float(values.mean()), baseline=base.dataset_mean_db, baseline_name="dataset_mean_psnr_db", note=note, primary=not multi, **common),
        Row(metric="images_above_20db", value=float(np.sum(values >= RECOGNISABLE_DB)), baseline=float(base.free_count_above(RECOGNISABLE_DB)), baseline_name="dataset_mean_images_above_20db", primary=multi, note=f"of {values.size} images" + (f"; {note}" if note else ""), **common),
        Row(metric="images_above_30db", value=float(np.sum(values >= EXACT_DB)), baseline=float(base.free_count_above(EXACT_DB)), baseline_name="dataset_mean_images_above_30db", primary=False, note=f"of {values.size} images", **common),
        Row(metric="images_attacked", value=float(values.size), baseline=None, baseline_name="", primary=False, **common),
        Row(metric="random_image_psnr_db", value=base.random_image_db, baseline=None, baseline_name="", primary=False, **common),
    ]
    if label_acc is not None:
        rows.append(Row(metric="label_accuracy", value=label_acc, baseline=0.1, baseline_name="chance", primary=False, **common))
    return rows


PANEL_LIMIT = 8


def _panel(name: str, title: str, originals: torch.Tensor, recon: torch.Tensor, psnrs: Sequence[float] | F64) -> ImagePanel:
    limit = PANEL_LIMIT
    return ImagePanel(name, title, originals[:limit].detach().clone(), recon[:limit].detach().clamp(0, 1).clone(), tuple(float(p) for p in list(psnrs)[:limit]))


def _matched_panel(name: str, title: str, originals: torch.Tensor, candidates: torch.Tensor, match: Matching) -> ImagePanel:
    """A panel of matched candidates: a blank image, marked unmatched, where there is none.

    A blank rather than a stand-in (e.g. the data set's mean image): a picture shown above
    a "0 dB" label would contradict it.
    """
    blank = torch.zeros_like(originals[0])
    panel = _panel(name, title, originals, match.ordered(candidates, blank), match.psnr_db)
    unmatched = tuple(bool(i < 0) for i in match.candidate_index.tolist()[:PANEL_LIMIT])
    return replace(panel, unmatched=unmatched)


@contextmanager
def _threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- gradient inversion


def cell_plaintext_controls(ctx: EvaluationContext) -> CellOutput:
    """Positive controls: one client's plaintext update, batch 1 -- every inversion must succeed."""
    cfg = ctx.config
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    for ds_name in cfg.inversion_datasets:
        data = ctx.dataset(ds_name)
        rng = ctx.rng(100 + list(DatasetName).index(ds_name))
        hidden = 32 if ds_name is DatasetName.DIGITS else 64
        model = make_mlp(data.input_size, hidden, data.num_classes, activation=Activation.SIGMOID, seed=cfg.seed)
        xs, ys = _pick(data, cfg.targets, rng)
        base = baselines(xs, data.images, seed=cfg.seed)
        setting = f"{_describe(model, data, Activation.SIGMOID, hidden)}; one client, batch 1"
        results: dict[str, tuple[list[float], list[torch.Tensor], int]] = {"closed_form": ([], [], 0), "dlg": ([], [], 0), "inverting_gradients": ([], [], 0)}
        timing = {"closed_form": 0.0, "dlg": 0.0, "inverting_gradients": 0.0}
        for i in range(cfg.targets):
            x, y = xs[i : i + 1], ys[i : i + 1]
            grads = gi.model_gradient(model, x, y)
            weight, bias = gi.first_linear(model, grads)
            start = time.perf_counter()
            cf = gi.closed_form_first_layer(weight, bias, data.image_shape)
            timing["closed_form"] += time.perf_counter() - start
            start = time.perf_counter()
            d = gi.dlg(model, grads, batch_size=1, image_shape=data.image_shape, iterations=cfg.dlg_iterations, seed=cfg.seed + i)
            timing["dlg"] += time.perf_counter() - start
            start = time.perf_counter()
            ig = gi.inverting_gradients(model, grads, batch_size=1, image_shape=data.image_shape, iterations=cfg.ig_iterations, seed=cfg.seed + i)
            timing["inverting_gradients"] += time.perf_counter() - start
            for key, rec, labels in (("closed_form", cf, None), ("dlg", d.images, d.labels), ("inverting_gradients", ig.images, ig.labels)):
                ps, recs, correct = results[key]
                ps.append(float(psnr_matrix(rec, x)[0, 0]))
                recs.append(rec.detach().clamp(0, 1))
                results[key] = (ps, recs, correct + int(labels is not None and int(labels[0]) == int(y[0])))
        for key, (ps, recs, correct) in results.items():
            ok = all(p >= RECOGNISABLE_DB for p in ps)
            rows += _gradient_rows(
                attack=f"{key} [{ds_name.value}]",
                defense="none (plaintext update)",
                setting=setting,
                psnrs=ps,
                base=base,
                succeeded=ok,
                expected=True,
                positive_control=True,
                label_acc=(correct / len(ps)) if key != "closed_form" else None,
                note="labels by iDLG" if key != "closed_form" else "x = dW_i / db_i",
            )
            rows.append(
                Row(
                    family=Family.GRADIENT_INVERSION,
                    attack=f"{key} [{ds_name.value}]",
                    defense="none (plaintext update)",
                    setting=setting,
                    metric="seconds_per_image",
                    value=timing[key] / cfg.targets,
                    baseline=None,
                    baseline_name="",
                    succeeded=ok,
                    expected=True,
                    positive_control=True,
                    primary=False,
                    note="wall time of the attack on this machine (first call includes warm-up)",
                )
            )
            panels.append(_panel(f"plaintext_{ds_name.value}_{key}", f"{key} on one plaintext update ({ds_name.value}, batch 1)", xs, torch.cat(recs), ps))
    return CellOutput(tuple(rows), tuple(panels))


def _sum_of_clients(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor, ctx: EvaluationContext) -> list[torch.Tensor]:
    """Each image is one client's batch-1 update; the server gets their secure sum."""
    updates = {i + 1: gi.flatten(gi.model_gradient(model, xs[i : i + 1], ys[i : i + 1])).numpy() for i in range(xs.shape[0])}
    total = ctx.aggregator(updates)
    return gi.unflatten_like(torch.from_numpy(np.asarray(total, dtype=np.float64)), list(model.parameters()))


def cell_secure_sum_inversion(ctx: EvaluationContext) -> CellOutput:
    """Inversion of the secure sum of n clients: single target, joint reconstruction, ReLU leakage."""
    cfg = ctx.config
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    n = cfg.cohort
    defense = f"secure aggregation (n={n}, {ctx.aggregator_name})"
    for ds_name in cfg.inversion_datasets:
        data = ctx.dataset(ds_name)
        rng = ctx.rng(200 + list(DatasetName).index(ds_name))
        shape = data.image_shape
        xs, ys = _pick(data, n, rng)
        base = baselines(xs, data.images, seed=cfg.seed)

        # (1) single-target attack: treat the sum as one client's update
        hidden = 32 if ds_name is DatasetName.DIGITS else 64
        model = make_mlp(data.input_size, hidden, data.num_classes, activation=Activation.SIGMOID, seed=cfg.seed)
        total = _sum_of_clients(model, xs, ys, ctx)
        setting = f"{_describe(model, data, Activation.SIGMOID, hidden)}; n={n} clients, batch 1 each"
        weight, bias = gi.first_linear(model, total)
        single = {
            "closed_form": gi.closed_form_first_layer(weight, bias, shape),
            "dlg": gi.dlg(model, total, batch_size=1, image_shape=shape, iterations=cfg.dlg_iterations, seed=cfg.seed).images,
            "inverting_gradients": gi.inverting_gradients(model, total, batch_size=1, image_shape=shape, iterations=cfg.ig_iterations, seed=cfg.seed).images,
        }
        for key, rec in single.items():
            best = float(psnr_matrix(rec, xs).max())  # scored against the best-matching client: generous
            rows += _gradient_rows(
                attack=f"{key} (single target) [{ds_name.value}]",
                defense=defense,
                setting=setting,
                psnrs=[best],
                base=base,
                succeeded=best >= RECOGNISABLE_DB,
                expected=False,
                note="scored against the closest of the n images",
            )
            if ds_name is DatasetName.DIGITS or key == "dlg":
                order = int(np.argmax(psnr_matrix(rec, xs)[0]))
                panels.append(_panel(f"sum_single_{ds_name.value}_{key}", f"{key} on a secure sum of {n} ({ds_name.value}): closest client", xs[order : order + 1], rec, [best]))

        # (2) joint reconstruction: feasible when n * D < P, hopeless when n * D > P
        for hidden_j, label in ((hidden, "n*D < P"), (2, "n*D > P")):
            model_j = make_mlp(data.input_size, hidden_j, data.num_classes, activation=Activation.SIGMOID, seed=cfg.seed)
            params = num_parameters(model_j)
            feasible = n * data.input_size < params
            total_j = _sum_of_clients(model_j, xs, ys, ctx)
            res = gi.dlg(model_j, total_j, batch_size=n, image_shape=shape, iterations=max(cfg.dlg_iterations, 300), seed=cfg.seed)
            match = match_reconstructions(res.images, xs)
            leaked = match.count_above(RECOGNISABLE_DB)
            rows += _gradient_rows(
                attack=f"dlg joint (all n), {label} [{ds_name.value}]",
                defense=defense,
                setting=f"{_describe(model_j, data, Activation.SIGMOID, hidden_j)}; n={n}; {label}: n*D={n * data.input_size}, P={params}",
                psnrs=list(match.psnr_db),
                base=base,
                succeeded=leaked >= 1,
                expected=feasible,
                label_acc=gi.label_accuracy(res.labels, ys, data.num_classes),
                note="matched by Hungarian assignment; label counts from the last bias gradient",
                multi=True,
            )
            panels.append(_matched_panel(f"sum_joint_{ds_name.value}_{'feasible' if feasible else 'infeasible'}", f"joint DLG on a secure sum of {n} ({ds_name.value}, {label})", xs, res.images, match))

        # (3) a ReLU first layer leaks individual images through the sum
        relu_hidden = 256
        model_r = make_mlp(data.input_size, relu_hidden, data.num_classes, activation=Activation.RELU, seed=cfg.seed)
        total_r = _sum_of_clients(model_r, xs, ys, ctx)
        weight, bias = gi.first_linear(model_r, total_r)
        cands, _ = gi.closed_form_per_neuron(weight, bias, shape, max_candidates=n)
        match = match_reconstructions(cands, xs)
        leaked = match.count_above(RECOGNISABLE_DB)
        rows += _gradient_rows(
            attack=f"closed_form per ReLU neuron [{ds_name.value}]",
            defense=defense,
            setting=f"{_describe(model_r, data, Activation.RELU, relu_hidden)}; n={n}; honest random init",
            psnrs=list(match.psnr_db),
            base=base,
            succeeded=leaked >= 1,
            expected=True,
            note=f"{n} guesses, ranked without ground truth; a neuron active for one image isolates it",
            multi=True,
        )
        panels.append(_matched_panel(f"sum_relu_{ds_name.value}", f"per-neuron closed form on a secure sum of {n} ({ds_name.value}, ReLU)", xs, cands, match))
    return CellOutput(tuple(rows), tuple(panels))


def cell_dp_noise_sweep(ctx: EvaluationContext) -> CellOutput:
    """One client's update, clipped and Gaussian-noised at decreasing signal-to-noise ratios."""
    from dp.central import CentralGaussianMechanism
    from dp.clipping import clip_l2

    cfg = ctx.config
    data = ctx.dataset(DatasetName.DIGITS)
    rng = ctx.rng(300)
    hidden = 32
    model = make_mlp(data.input_size, hidden, data.num_classes, activation=Activation.RELU, seed=cfg.seed)
    params = list(model.parameters())
    shape = data.image_shape
    prior = (data.mean_image()[0], data.images.var(dim=0))
    xs, ys = _pick(data, cfg.noise_targets, rng)
    base = baselines(xs, data.images, seed=cfg.seed)
    attacks = ("closed_form", "dlg", "inverting_gradients")
    curves: dict[str, list[float]] = {a: [] for a in attacks}
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    setting_base = _describe(model, data, Activation.RELU, hidden)
    dim = num_parameters(model)
    for level, snr in enumerate(cfg.snr_levels):
        per_attack: dict[str, list[float]] = {a: [] for a in attacks}
        shown: dict[str, list[torch.Tensor]] = {a: [] for a in attacks}
        multipliers = []
        measured = []
        for i in range(xs.shape[0]):
            x, y = xs[i : i + 1], ys[i : i + 1]
            flat = gi.flatten(gi.model_gradient(model, x, y)).numpy()
            clip = float(np.linalg.norm(flat))  # clip at the update's own norm: no distortion
            clipped = clip_l2(flat, clip).update
            z = 1.0 / (snr * math.sqrt(dim))  # SNR = ||g|| / (z C sqrt(d)) with C = ||g||
            multipliers.append(z)
            mech = CentralGaussianMechanism(noise_multiplier=z, clip_norm=clip)
            noised = np.asarray(mech.add_noise(clipped).value)  # noise from the library's CSPRNG
            std = mech.noise_stddev
            measured.append(float(np.linalg.norm(clipped) / np.linalg.norm(noised - clipped)))
            grads = gi.unflatten_like(torch.from_numpy(noised), params)
            weight, bias = gi.first_linear(model, grads)
            recs = {
                "closed_form": gi.closed_form_first_layer(weight, bias, shape, noise_std=std, prior=prior),
                "dlg": gi.dlg(model, grads, batch_size=1, image_shape=shape, labels=None, iterations=cfg.dlg_iterations, seed=cfg.seed + i).images,
                "inverting_gradients": gi.inverting_gradients(model, grads, batch_size=1, image_shape=shape, iterations=cfg.ig_iterations, seed=cfg.seed + i).images,
            }
            for key, rec in recs.items():
                per_attack[key].append(float(psnr_matrix(rec, x)[0, 0]))
                shown[key].append(rec.detach().clamp(0, 1))
        z_mean = float(np.mean(multipliers))
        for key in attacks:
            mean = float(np.mean(per_attack[key]))
            curves[key].append(mean)
            expected: bool | None = True if snr >= 10 else (False if snr <= 0.1 else None)
            rows += _gradient_rows(
                attack=key,
                defense=f"DP Gaussian noise, SNR={snr:g}",
                setting=f"{setting_base}; clip C=||g||, noise multiplier z={z_mean:.3g}; {xs.shape[0]} targets",
                psnrs=per_attack[key],
                base=base,
                succeeded=mean >= RECOGNISABLE_DB,
                expected=expected,
                positive_control=snr >= 10,
                note=f"SNR = ||g|| / (z C sqrt(d)), measured ||g|| / ||noise|| = {float(np.mean(measured)):.3g}; mean PSNR over targets",
            )
            if level in (0, len(cfg.snr_levels) // 2, len(cfg.snr_levels) - 1):
                panels.append(_panel(f"dp_snr_{snr:g}_{key}".replace(".", "p"), f"{key} at SNR {snr:g}", xs, torch.cat(shown[key]), per_attack[key]))
    tolerance = 1.0
    for key in attacks:
        ys_ = curves[key]
        # falls monotonically (within the tolerance) until it reaches the baseline, where
        # run-to-run noise of a few tenths of a dB no longer means anything
        floor = base.dataset_mean_db + tolerance
        monotone = all(b <= a + tolerance or b <= floor for a, b in zip(ys_, ys_[1:], strict=False))
        at_baseline = [s for s, v in zip(cfg.snr_levels, ys_, strict=True) if v <= base.dataset_mean_db + tolerance]
        common: dict[str, Any] = {"family": Family.GRADIENT_INVERSION, "attack": key, "defense": "DP Gaussian noise sweep", "setting": setting_base, "primary": False}
        rows.append(Row(metric="psnr_monotone_in_noise", value=float(monotone), baseline=1.0, baseline_name="required", succeeded=monotone, expected=True, note=f"within {tolerance} dB, down to the dataset-mean baseline", **common))
        rows.append(
            Row(
                metric="largest_snr_at_baseline",
                value=float(max(at_baseline)) if at_baseline else math.nan,
                baseline=0.1,
                baseline_name="expected about",
                succeeded=bool(at_baseline),
                expected=None,
                note="largest SNR whose mean PSNR is within 1 dB of the dataset-mean baseline",
                **common,
            )
        )
    figure = Figure(
        name="psnr_vs_noise",
        title=f"Reconstruction quality against signal-to-noise ratio ({setting_base})",
        xlabel="signal-to-noise ratio ||g|| / ||noise||",
        ylabel="PSNR (dB)",
        series=tuple(Series(k, tuple(cfg.snr_levels), tuple(v)) for k, v in curves.items()),
        hlines=(("dataset mean", base.dataset_mean_db), ("random image", base.random_image_db), ("recognisable (20 dB)", RECOGNISABLE_DB)),
        logx=True,
    )
    return CellOutput(tuple(rows), tuple(panels), (figure,))


# ----------------------------------------------------------------------------- membership inference


def cell_membership(ctx: EvaluationContext) -> CellOutput:
    """Loss-threshold and LiRA membership inference, without and with DP-SGD."""
    cfg = ctx.config
    data = ctx.dataset(DatasetName.MNIST)
    rng = ctx.rng(400)
    population = data.subset(rng.permutation(len(data))[: cfg.mia_population])
    plain_cfg = mia.TrainingConfig(hidden=64, epochs=100, learning_rate=0.01)
    dp_cfg = mia.TrainingConfig(hidden=64, epochs=10, batch_size=125, learning_rate=0.01)
    runs: list[tuple[str, mia.MembershipResult, bool]] = []
    plain = mia.run_membership_experiment(population, plain_cfg, num_shadows=cfg.mia_shadows, seed=cfg.seed)
    runs.append(("none (plaintext training)", plain, True))
    runs.append(("secure aggregation (same released model)", plain, True))
    for z in cfg.mia_noise_multipliers:
        res = mia.run_membership_experiment(population, dp_cfg, num_shadows=cfg.mia_shadows, dp=mia.DpSgdConfig(noise_multiplier=z, max_grad_norm=1.0), seed=cfg.seed)
        runs.append((f"DP-SGD z={z:g} (eps={res.epsilon:.2f}, delta={res.delta:g})", res, False))
    rows: list[Row] = []
    series: list[Series] = []
    for defense, res, expected in runs:
        setting = f"mnist population {len(population)} (half members), MLP {data.input_size}-64-10 relu; {res.num_shadows} shadow models; train/test acc {res.train_accuracy:.2f}/{res.test_accuracy:.2f}"
        for attack, roc in (("loss threshold", res.loss_roc), ("LiRA", res.lira_roc)):
            tpr = roc.tpr_at_fpr(0.01)
            ok = roc.auc >= 0.6 or tpr >= 0.03
            common: dict[str, Any] = {"family": Family.MEMBERSHIP, "attack": attack, "defense": defense, "setting": setting, "succeeded": ok, "expected": expected, "positive_control": defense.startswith("none")}
            note = "the released model is identical with or without secure aggregation" if defense.startswith("secure") else ""
            rows.append(Row(metric="auc", value=roc.auc, baseline=0.5, baseline_name="chance", note=note, **common))
            rows.append(Row(metric="tpr_at_1pct_fpr", value=tpr, baseline=0.01, baseline_name="chance", primary=False, **common))
            if not defense.startswith("secure"):
                series.append(Series(f"{attack}, {defense.split(' (')[0]} (AUC {roc.auc:.2f})", tuple(np.maximum(roc.fpr, 1e-4).tolist()), tuple(np.maximum(roc.tpr, 1e-4).tolist())))
    figure = Figure(name="roc_membership", title="Membership inference ROC (log-log)", xlabel="false-positive rate", ylabel="true-positive rate", series=tuple(series), logx=True, logy=True, diagonal=True)
    return CellOutput(tuple(rows), (), (figure,))


# ----------------------------------------------------------------------------- model-level attacks

_DDP_BITS = 32


def _ddp_encoder(ctx: EvaluationContext, salt: int, *, z: float, clip: float, n: int, dim: int, colluding_fraction: float = 0.0) -> Any:
    from dp.distributed import DistributedDPEncoder, DistributedMechanism, select_parameters

    params = select_parameters(
        mechanism=DistributedMechanism.DISCRETE_GAUSSIAN,
        noise_multiplier=z,
        clip_norm=clip,
        bits=_DDP_BITS,
        expected_clients=n,
        dimension=dim,
        colluding_fraction=colluding_fraction,
    )
    return DistributedDPEncoder(params, rotation_seed=ctx.seed_bytes(salt), rounding_rng=ctx.rng(salt))


def _ddp_round(encoder: Any, updates: Mapping[int, F64], *, server_controlled: Sequence[int] = ()) -> F64:
    """One real round with distributed DP: clients encode (clip, rotate, scale, round, add
    their noise share) and mask; server-run clients send zeros; the server decodes."""
    from threat_models.attacks.protocol_level import secure_ring_sum

    padded = encoder.parameters.padded_dimension
    encodings = {
        cid: (np.zeros(padded, dtype=np.uint64) if cid in server_controlled else encoder.encode(vec))
        for cid, vec in updates.items()
    }
    total = secure_ring_sum(encodings, bits=_DDP_BITS) if len(encodings) > 1 else ml.ring_sum(encodings, _DDP_BITS)
    return np.asarray(encoder.decode_sum(total, len(encodings)), dtype=np.float64)


def _image_psnr(rec: torch.Tensor, x: torch.Tensor) -> float:
    return float(psnr_matrix(rec, x)[0, 0])


def _z_for_snr(snr: float, dim: int, clip: float, norm: float) -> float:
    """Noise multiplier giving ``||g|| / (z C sqrt(d)) = snr``."""
    return norm / (snr * clip * math.sqrt(dim))


def cell_model_inconsistency(ctx: EvaluationContext) -> CellOutput:
    """Different models to different clients: the target's update comes out of the sum alone."""
    cfg = ctx.config
    data = ctx.dataset(DatasetName.DIGITS)
    rng = ctx.rng(500)
    n, hidden = cfg.cohort, 64
    model = make_mlp(data.input_size, hidden, data.num_classes, activation=Activation.RELU, seed=cfg.seed)
    parts = split_indices(len(data), n, 1, rng=rng)
    batches = {i + 1: (data.images[p], data.labels[p]) for i, p in enumerate(parts)}
    target = 1
    x = batches[target][0]
    base = baselines(x, data.images, seed=cfg.seed)
    setting = f"{_describe(model, data, Activation.RELU, hidden)}; n={n}, target batch 1; others get a dead-first-layer model"
    rows: list[Row] = []
    panels: list[ImagePanel] = []

    # the real protocol with per-client model hashes: baseline (no model binding) vs hardened
    from protocols import Hardening
    from threat_models.attacks.protocol_level import model_hash, secure_sum

    dead = ml.dead_first_layer_model(model)
    updates = ml.client_updates({cid: (model if cid == target else dead) for cid in batches}, batches)
    hashes = {cid: model_hash(_model_bytes(model if cid == target else dead)) for cid in batches}
    for hardened in (False, True):
        hardening = Hardening() if hardened else replace(Hardening(), model_bound_signatures=False)
        defense = "SecAgg, keys signed over the round and the model hash (hardened)" if hardened else "SecAgg, signed keys without the model hash (baseline)"
        try:
            total = secure_sum(updates, protocol="secagg", hardening=hardening, model_hash=hashes)
        except SecAggError as exc:
            rows.append(
                Row(
                    family=Family.MODEL_LEVEL,
                    attack="model inconsistency",
                    defense=defense,
                    setting=setting,
                    metric="round_aborted",
                    value=1.0,
                    baseline=0.0,
                    baseline_name="honest round",
                    succeeded=False,
                    expected=not hardened,
                    note=f"clients refused peers' keys signed over another model: {type(exc).__name__}",
                )
            )
            continue
        grads = gi.unflatten_like(torch.from_numpy(total), list(model.parameters()))
        weight, bias = gi.first_linear(model, grads)
        rec = gi.closed_form_first_layer(weight, bias, data.image_shape)
        p = _image_psnr(rec, x)
        rows += _gradient_rows(family=Family.MODEL_LEVEL, attack="model inconsistency", defense=defense, setting=setting, psnrs=[p], base=base, succeeded=p >= RECOGNISABLE_DB, expected=not hardened, positive_control=not hardened, note="the round completed; closed form on the first layer of the sum")
        panels.append(_panel(f"model_inconsistency_protocol_{int(hardened)}", f"model inconsistency: {defense}", x, rec, [p]))

    # distributed DP: the other clients still add their noise shares (z sized for the cohort)
    dim = updates[target].size
    clip = max(float(np.linalg.norm(u)) for u in updates.values())
    z = _z_for_snr(0.1, dim, clip, float(np.linalg.norm(updates[target])))
    encoder = _ddp_encoder(ctx, 501, z=z, clip=clip, n=n, dim=dim)
    noised = _ddp_round(encoder, updates)
    grads = gi.unflatten_like(torch.from_numpy(noised), list(model.parameters()))
    weight, bias = gi.first_linear(model, grads)
    std = encoder.parameters.aggregate_error_stddev(n)
    rec = gi.closed_form_first_layer(weight, bias, data.image_shape, noise_std=std, prior=(data.mean_image()[0], data.images.var(dim=0)))
    p = _image_psnr(rec, x)
    ddp_rows = _gradient_rows(family=Family.MODEL_LEVEL, attack="model inconsistency", defense=f"secure aggregation + distributed DP (z={z:.3g} for n={n})", setting=setting + "; target SNR 0.1", psnrs=[p], base=base, succeeded=p >= RECOGNISABLE_DB, expected=False)
    rows += ddp_rows
    panels.append(_panel("model_inconsistency_ddp", "model inconsistency against distributed DP", x, rec, [p]))
    return CellOutput(tuple(rows), tuple(panels))


def _model_bytes(model: nn.Module) -> bytes:
    return b"".join(p.detach().to(torch.float32).numpy().tobytes() for p in model.parameters())


def cell_sybil(ctx: EvaluationContext) -> CellOutput:
    """Sybils: the server runs every client but the target."""
    cfg = ctx.config
    data = ctx.dataset(DatasetName.DIGITS)
    rng = ctx.rng(600)
    hidden = 32
    n = 64 if not cfg.quick else 32
    model = make_mlp(data.input_size, hidden, data.num_classes, activation=Activation.RELU, seed=cfg.seed)
    params = list(model.parameters())
    xs, ys = _pick(data, cfg.targets, rng)
    base = baselines(xs, data.images, seed=cfg.seed)
    setting = f"{_describe(model, data, Activation.RELU, hidden)}; cohort n={n}: 1 honest target + {n - 1} Sybils"
    prior = (data.mean_image()[0], data.images.var(dim=0))
    target = 1
    sybils = list(range(2, n + 1))
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    intended_snr = 0.3
    results: dict[str, tuple[list[float], list[float], list[float], list[torch.Tensor], str]] = {}
    for i in range(xs.shape[0]):
        x, y = xs[i : i + 1], ys[i : i + 1]
        g = gi.flatten(gi.model_gradient(model, x, y)).numpy()
        dim = g.size
        clip = float(np.linalg.norm(g))
        z = _z_for_snr(intended_snr, dim, clip, clip)
        zeros = {s: np.zeros(dim) for s in sybils}
        cases: list[tuple[str, F64, float, float]] = []
        # (a) secure aggregation alone: exact isolation
        recovered = ml.sybil_attack(g, zeros, ctx.aggregator, target=target)
        cases.append((f"secure aggregation, any variant ({ctx.aggregator_name})", recovered, 0.0, 0.0))
        # (b) distributed DP sized for n honest clients: only the target's own share is left
        enc = _ddp_encoder(ctx, 610 + i, z=z, clip=clip, n=n, dim=dim)
        cohort = {target: g, **zeros}
        recovered = _ddp_round(enc, cohort, server_controlled=sybils)
        cases.append((f"secure aggregation + distributed DP sized for {n} honest clients (z={z:.3g})", recovered, enc.parameters.local_stddev, z * clip))
        # (c) distributed DP sized for Sybils: every client adds the full noise itself
        enc_s = _ddp_encoder(ctx, 620 + i, z=z, clip=clip, n=n, dim=dim, colluding_fraction=(n - 1) / n)
        recovered = _ddp_round(enc_s, cohort, server_controlled=sybils)
        cases.append((f"distributed DP sized for n-1 colluders (local noise, z={z:.3g})", recovered, enc_s.parameters.local_stddev, z * clip))
        for defense, vec, std, intended in cases:
            grads = gi.unflatten_like(torch.from_numpy(vec), params)
            weight, bias = gi.first_linear(model, grads)
            if std > 0:
                rec = gi.closed_form_first_layer(weight, bias, data.image_shape, noise_std=std, prior=prior)
                dl = gi.dlg(model, grads, batch_size=1, image_shape=data.image_shape, iterations=cfg.dlg_iterations, seed=cfg.seed + i).images
                if _image_psnr(dl, x) > _image_psnr(rec, x):
                    rec = dl
            else:
                rec = gi.closed_form_first_layer(weight, bias, data.image_shape)
            residual = float(np.std(vec - g))
            psnrs, residuals, intendeds, recs, _ = results.get(defense, ([], [], [], [], defense))
            psnrs.append(_image_psnr(rec, x))
            residuals.append(residual)
            intendeds.append(intended)
            recs.append(rec.detach().clamp(0, 1))
            results[defense] = (psnrs, residuals, intendeds, recs, defense)
    for k, (defense, (psnrs, residuals, intendeds, recs, _)) in enumerate(results.items()):
        mean = float(np.mean(psnrs))
        ok = mean >= RECOGNISABLE_DB
        expected = k < 2  # DP sized for n honest clients does not survive n-1 Sybils
        cell_rows = _gradient_rows(family=Family.MODEL_LEVEL, attack="Sybil", defense=defense, setting=setting + f"; intended target SNR {intended_snr:g}", psnrs=psnrs, base=base, succeeded=ok, expected=expected, positive_control=k == 0, note="best of closed form (Wiener) and DLG")
        if k > 0:
            cell_rows.append(
                Row(
                    family=Family.MODEL_LEVEL,
                    attack="Sybil",
                    defense=defense,
                    setting=setting,
                    metric="residual_noise_std",
                    value=float(np.mean(residuals)),
                    baseline=float(np.mean(intendeds)),
                    baseline_name="intended noise std z*C",
                    succeeded=ok,
                    expected=expected,
                    primary=False,
                    note=f"ratio {float(np.mean(residuals)) / float(np.mean(intendeds)):.3f} vs 1/sqrt(n) = {1 / math.sqrt(n):.3f}: the target's own share is all that is left" if k == 1 else "each client's own noise is the full z*C",
                )
            )
        rows += cell_rows
        panels.append(_panel(f"sybil_{k}", f"Sybil attack: {defense}", xs, torch.cat(recs), psnrs))
    return CellOutput(tuple(rows), tuple(panels))


def cell_trap_weights(ctx: EvaluationContext) -> CellOutput:
    """Imprint / trap weights sent to every client: individual images out of the aggregate."""
    cfg = ctx.config
    data = ctx.dataset(DatasetName.DIGITS)
    rng = ctx.rng(700)
    n, batch, bins = cfg.cohort, 4, 256
    honest = make_mlp(data.input_size, bins, data.num_classes, activation=Activation.RELU, seed=cfg.seed)
    public = data.images[torch.as_tensor(rng.choice(len(data), size=500, replace=False))]
    trap = ml.imprint_model(honest, public, seed=cfg.seed)
    parts = split_indices(len(data), n, batch, rng=rng)
    batches = {i + 1: (data.images[p], data.labels[p]) for i, p in enumerate(parts)}
    xs = torch.cat([batches[c][0] for c in sorted(batches)])
    base = baselines(xs, data.images, seed=cfg.seed)
    setting = f"digits, trap MLP {data.input_size}-{bins}-10 relu (same shapes as the honest model); n={n} clients x batch {batch} = {n * batch} images"
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    updates = ml.client_updates({c: trap for c in batches}, batches)
    aggregate = ctx.aggregator(updates)
    cands, _ = ml.imprint_reconstruct(trap, torch.from_numpy(aggregate), data.image_shape, max_candidates=n * batch)
    match = match_reconstructions(cands, xs)
    leaked = match.count_above(RECOGNISABLE_DB)
    cell = _gradient_rows(family=Family.MODEL_LEVEL, attack="trap/imprint weights", defense=f"secure aggregation, model consistency checks pass ({ctx.aggregator_name})", setting=setting, psnrs=list(match.psnr_db), base=base, succeeded=leaked >= 1, expected=True, positive_control=True, multi=True, note="the same malicious model goes to every client")
    panels.append(_matched_panel("trap_secagg", "trap weights through secure aggregation", xs, cands, match))
    # distributed DP on the same round
    dim = next(iter(updates.values())).size
    clip = max(float(np.linalg.norm(u)) for u in updates.values())
    mean_norm = float(np.mean([np.linalg.norm(u) for u in updates.values()]))
    z = _z_for_snr(0.1, dim, clip, mean_norm)
    enc = _ddp_encoder(ctx, 701, z=z, clip=clip, n=n, dim=dim)
    noised = _ddp_round(enc, updates)
    cands, _ = ml.imprint_reconstruct(trap, torch.from_numpy(noised), data.image_shape, max_candidates=n * batch)
    match = match_reconstructions(cands, xs)
    leaked = match.count_above(RECOGNISABLE_DB)
    cell += _gradient_rows(family=Family.MODEL_LEVEL, attack="trap/imprint weights", defense=f"secure aggregation + distributed DP (z={z:.3g})", setting=setting + "; per-client SNR 0.1", psnrs=list(match.psnr_db), base=base, succeeded=leaked >= 1, expected=False, multi=True)
    panels.append(_matched_panel("trap_ddp", "trap weights against distributed DP", xs, cands, match))
    rows += cell
    return CellOutput(tuple(rows), tuple(panels))


def cell_disaggregation(ctx: EvaluationContext) -> CellOutput:
    """Aggregates of overlapping cohorts over rounds, disaggregated by least squares."""
    cfg = ctx.config
    data = ctx.dataset(DatasetName.DIGITS)
    rng = ctx.rng(800)
    n, per_round, rounds, hidden = cfg.cohort, cfg.cohort - 2, 2 * cfg.cohort, 32
    model = make_mlp(data.input_size, hidden, data.num_classes, activation=Activation.RELU, seed=cfg.seed)
    params = list(model.parameters())
    parts = split_indices(len(data), n, 1, rng=rng)
    batches = {i + 1: (data.images[p], data.labels[p]) for i, p in enumerate(parts)}
    ids = sorted(batches)
    xs = torch.cat([batches[c][0] for c in ids])
    base = baselines(xs, data.images, seed=cfg.seed)
    updates = ml.client_updates({c: model for c in ids}, batches)
    participation = ml.participation_matrix(rounds, n, per_round, rng=rng)
    setting = f"{_describe(model, data, Activation.RELU, hidden)}; {n} clients, {rounds} rounds of {per_round} (= minimum aggregate size), model frozen by the server"
    dim = updates[ids[0]].size
    clip = max(float(np.linalg.norm(u)) for u in updates.values())
    mean_norm = float(np.mean([np.linalg.norm(u) for u in updates.values()]))
    z = _z_for_snr(0.1, dim, clip, mean_norm)
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    for k, defense in enumerate((f"secure aggregation per round ({ctx.aggregator_name})", f"secure aggregation + distributed DP per round (z={z:.3g})")):
        sums = []
        for r in range(rounds):
            cohort = {c: updates[c] for j, c in enumerate(ids) if participation[r, j]}
            if k == 0:
                sums.append(ctx.aggregator(cohort))
            else:
                enc = _ddp_encoder(ctx, 810 + r, z=z, clip=clip, n=per_round, dim=dim)
                sums.append(_ddp_round(enc, cohort))
        estimate = ml.disaggregate(np.stack(sums), participation)
        recs = []
        for j in range(n):
            grads = gi.unflatten_like(torch.from_numpy(estimate[j]), params)
            weight, bias = gi.first_linear(model, grads)
            recs.append(gi.closed_form_first_layer(weight, bias, data.image_shape).clamp(0, 1))
        rec = torch.cat(recs)
        psnrs = [float(psnr_matrix(rec[j : j + 1], xs[j : j + 1])[0, 0]) for j in range(n)]
        leaked = sum(p >= RECOGNISABLE_DB for p in psnrs)
        cell = _gradient_rows(family=Family.MODEL_LEVEL, attack="disaggregation across rounds", defense=defense, setting=setting, psnrs=psnrs, base=base, succeeded=leaked >= 1, expected=k == 0, positive_control=k == 0, multi=True, note="least squares on A = P U with known participation P")
        rows += cell
        panels.append(_panel(f"disaggregation_{k}", f"disaggregation: {defense}", xs, rec, psnrs))
    return CellOutput(tuple(rows), tuple(panels))


# ----------------------------------------------------------------------------- protocol-level attacks


def cell_protocol_attacks(ctx: EvaluationContext) -> CellOutput:
    """Scripted malicious servers against the real clients: hardened vs unhardened baseline."""
    from threat_models.attacks import protocol_level as pl

    cfg = ctx.config
    data = ctx.dataset(DatasetName.DIGITS)
    rng = ctx.rng(900)
    n, hidden = cfg.cohort, 32
    model = make_mlp(data.input_size, hidden, data.num_classes, activation=Activation.RELU, seed=cfg.seed)
    parts = split_indices(len(data), n, 1, rng=rng)
    batches = {i + 1: (data.images[p], data.labels[p]) for i, p in enumerate(parts)}
    updates = ml.client_updates({c: model for c in batches}, batches)
    victim = 3
    x = batches[victim][0]
    setting = f"{n} clients, SecAgg (complete graph), malicious-server threat model; victim's update = its gradient on one digit (d={updates[victim].size})"
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    for attack in pl.ProtocolAttack:
        recs: list[torch.Tensor] = []
        scores: list[float] = []
        for configuration in (pl.Configuration.UNHARDENED, pl.Configuration.HARDENED):
            if attack is pl.ProtocolAttack.PAILLIER_SINGLE_DECRYPTION:
                outcome = pl.run_paillier_attack(configuration, updates, victim=victim, key_bits=512 if cfg.quick else 2048, seed=cfg.seed)
                where = f"{n} clients are the decryptors, threshold Paillier"
            else:
                outcome = pl.run_protocol_attack(attack, configuration, updates, victim=victim, seed=cfg.seed)
                where = setting
            expected = configuration is pl.Configuration.UNHARDENED
            rows.append(
                Row(
                    family=Family.PROTOCOL_LEVEL,
                    attack=attack.value,
                    defense=outcome.defense,
                    setting=where,
                    metric="victim_update_max_error",
                    value=outcome.error,
                    baseline=outcome.tolerance,
                    baseline_name="two quantisation steps",
                    succeeded=outcome.succeeded,
                    expected=expected,
                    positive_control=outcome.positive_control,
                    note=outcome.note,
                )
            )
            if outcome.recovered is not None:
                grads = gi.unflatten_like(torch.from_numpy(outcome.recovered), list(model.parameters()))
                weight, bias = gi.first_linear(model, grads)
                rec = gi.closed_form_first_layer(weight, bias, data.image_shape)
            else:
                rec = torch.zeros_like(x)
            recs.append(rec.clamp(0, 1))
            scores.append(_image_psnr(rec, x))
        panels.append(_panel(f"protocol_{attack.name.lower()}", f"{attack.value}: baseline (left) vs hardened (right)", torch.cat([x, x]), torch.cat(recs), scores))
    return CellOutput(tuple(rows), tuple(panels))


CELLS: tuple[Cell, ...] = (
    ("plaintext positive controls", Family.GRADIENT_INVERSION, cell_plaintext_controls),
    ("inversion of secure sums", Family.GRADIENT_INVERSION, cell_secure_sum_inversion),
    ("inversion under DP noise", Family.GRADIENT_INVERSION, cell_dp_noise_sweep),
    ("membership inference", Family.MEMBERSHIP, cell_membership),
    ("model inconsistency", Family.MODEL_LEVEL, cell_model_inconsistency),
    ("Sybil clients", Family.MODEL_LEVEL, cell_sybil),
    ("trap / imprint weights", Family.MODEL_LEVEL, cell_trap_weights),
    ("disaggregation across rounds", Family.MODEL_LEVEL, cell_disaggregation),
    ("protocol-level attacks", Family.PROTOCOL_LEVEL, cell_protocol_attacks),
)


@dataclass(frozen=True)
class EvaluationResult:
    """Everything one run produced.

    Attributes:
        config: the run's configuration.
        rows: every number.
        panels: image grids.
        figures: plots.
        seconds: wall time per cell.
        aggregator: how secure sums were computed.
        errors: cell name -> the exception that stopped it (an empty mapping when all ran).
    """

    config: EvaluationConfig
    rows: tuple[Row, ...]
    panels: tuple[ImagePanel, ...]
    figures: tuple[Figure, ...]
    seconds: Mapping[str, float]
    aggregator: str
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def controls_passed(self) -> bool:
        """Whether every cell ran and every positive control succeeded.

        Otherwise the evaluation proves nothing.
        """
        return not self.errors and all(r.succeeded for r in self.rows if r.positive_control)

    @property
    def unexpected(self) -> tuple[Row, ...]:
        """Rows whose verdict contradicts the expectation."""
        return tuple(r for r in self.rows if not r.as_expected)

    def not_stopped_by_secure_aggregation(self) -> tuple[Row, ...]:
        """Primary rows where an attack succeeded against secure aggregation (hardened, no DP)."""
        out = []
        for r in self.rows:
            d = r.defense.lower()
            if not (r.primary and r.succeeded) or r.positive_control and "baseline" in d:
                continue
            if ("secure aggregation" in d or "secagg" in d) and "baseline" not in d and "without" not in d and "colluders" not in d:
                out.append(r)
        return tuple(out)

    def to_json(self) -> dict[str, Any]:
        """The result as strict JSON (the rule of :mod:`secagg.outputs`: a non-finite
        number is ``null``, its JSON Pointer named under ``"non_finite"``)."""
        return _strict_document({
            "quick": self.config.quick,
            "seed": self.config.seed,
            "aggregator": self.aggregator,
            "controls_passed": self.controls_passed,
            "unexpected": len(self.unexpected),
            "errors": dict(self.errors),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "rows": [r._fields() for r in self.rows],
        })


def run_evaluation(config: EvaluationConfig, *, progress: bool | None = None, cells: Sequence[Cell] = CELLS, aggregator: tuple[ml.Aggregator, str] | None = None) -> EvaluationResult:
    """Run the matrix.

    Args:
        config: sizes and seed.
        progress: show a tqdm bar (default: when stderr is a terminal).
        cells: which cells (default all; filtered by ``config.families``).
        aggregator: ``(function, name)`` computing secure sums (default: the real protocol).
    """
    chosen = [c for c in cells if c[1] in config.families]
    if not chosen:
        raise InvalidParameterError("no cell selected")
    ctx = EvaluationContext(config, *(aggregator or (None, None)))
    show = sys.stderr.isatty() if progress is None else progress
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    figures: list[Figure] = []
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    with _threads(config.threads), tqdm(chosen, desc="secagg evaluate", unit="cell", disable=not show) as bar:
        for name, _, cell in bar:
            bar.set_postfix_str(name)
            start = time.perf_counter()
            try:
                out = cell(ctx)
            except Exception as exc:  # noqa: BLE001 - one broken cell must not hide the others
                errors[name] = f"{type(exc).__name__}: {exc}"
                seconds[name] = time.perf_counter() - start
                continue
            seconds[name] = time.perf_counter() - start
            rows += out.rows
            panels += out.panels
            figures += out.figures
    return EvaluationResult(config, tuple(rows), tuple(panels), tuple(figures), seconds, ctx.aggregator_name, errors)


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
    "psnr_db": "PSNR (dB)",
    "images_above_20db": "images >= 20 dB",
    "images_above_30db": "images >= 30 dB",
    "auc": "AUC",
    "tpr_at_1pct_fpr": "TPR at 1% FPR",
    "round_aborted": "round aborted",
    "victim_update_max_error": "error on victim",
    "residual_noise_std": "residual noise std",
    "psnr_monotone_in_noise": "PSNR falls with noise",
}

#: What the two verdict columns mean: one paragraph per column.
VERDICT_LEGEND: tuple[str, str] = (
    "attack: succeeded = the attack met its success criterion (an image at PSNR >= 20 dB; "
    "membership AUC >= 0.6 or TPR >= 3% at 1% FPR; one client's update isolated within two "
    "quantisation steps); stopped = it did not.",
    "as expected: yes = the outcome the harness requires; NO (regression) = a defense let "
    "through an attack it must stop; NO (control failed) = a positive control did not "
    "succeed, so the evaluation proves nothing; - = no claim in this cell (intermediate noise).",
)


def _summary_lines(result: EvaluationResult) -> list[tuple[Family, tuple[str, ...]]]:
    out: list[tuple[Family, tuple[str, ...]]] = []
    for r in result.rows:
        if not r.primary:
            continue
        attack = r.attack + (" [control]" if r.positive_control else "")
        out.append((r.family, (attack, r.defense, r.metric, _fmt(r.value), _fmt(r.baseline), r.outcome.value, r.expectation.value)))
    return out


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, subsequent_indent=indent, break_on_hyphens=False) or [""]


def _block(cells: Sequence[str], widths: Sequence[int], right: Sequence[bool]) -> list[str]:
    """One table row as lines: every cell wrapped to its column, columns side by side.

    Continuation lines of the first column are indented, so a wrapped name never reads as
    the next row.
    """
    wrapped = [_wrap(c, w, "  " if i == 0 else "") for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
    height = max(len(w) for w in wrapped)
    lines = []
    for i in range(height):
        parts = [
            (w[i] if i < len(w) else "").rjust(width) if r else (w[i] if i < len(w) else "").ljust(width)
            for w, width, r in zip(wrapped, widths, right, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return lines


def summary_table(result: EvaluationResult, *, markdown: bool = False, width: int = TABLE_WIDTH) -> str:
    """The primary rows as a text table grouped by family (or one markdown table).

    The text table fits in ``width`` columns (100 by default): each row is the attack with
    its figures and verdicts, then the defense on an indented line below it; long texts
    wrap. Two verdict columns: ``attack`` (``succeeded`` / ``stopped``) and ``as expected``
    (``yes``, ``NO (regression)``, ``NO (control failed)``, ``-`` for no claim); the legend
    (:data:`VERDICT_LEGEND`) follows the table.
    """
    lines = _summary_lines(result)
    if markdown:
        header = ("family", "attack", "defense", "metric", "value", "baseline", "attack result", "as expected")
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for fam, (attack, defense, metric, value, baseline, outcome, expectation) in lines:
            shown = f"**{expectation}**" if expectation.startswith("NO") else expectation
            cells = (fam.value, attack, defense, metric, value, baseline, outcome, shown)
            out.append("| " + " | ".join(cells).replace("\n", " ") + " |")
        return "\n".join(out)

    right = (False, False, True, True, False, False)
    fixed = [
        max([len("metric")] + [min(len(METRIC_LABELS.get(c[2], c[2])), 15) for _, c in lines]),
        max([len("value")] + [len(c[3]) for _, c in lines]),
        max([len("baseline")] + [len(c[4]) for _, c in lines]),
        len(Outcome.SUCCEEDED.value),
        len("(regression)"),
    ]
    attack_width = max(20, width - sum(fixed) - 2 * len(fixed))
    widths = [attack_width, *fixed]
    out = _block(("attack", "metric", "value", "baseline", "attack", "as expected"), widths, right)
    out += ["    defense"]
    current: Family | None = None
    for fam, (attack, defense, metric, value, baseline, outcome, expectation) in lines:
        if fam is not current:
            out.append(f"-- {fam.value} ".ljust(width, "-"))
            current = fam
        out += _block((attack, METRIC_LABELS.get(metric, metric.replace("_", " ")), value, baseline, outcome, expectation), widths, right)
        out += ["    " + text for text in _wrap(f"defense: {defense}", width - 4, "  ")]
    return "\n".join(out)
