"""Gradient-inversion cells: what the server reads out of updates and their secure sums.

* :func:`cell_plaintext_controls` -- the positive controls: one client's plaintext update
  (batch 1), which the closed form, DLG and Inverting Gradients must all invert;
* :func:`cell_secure_sum_inversion` -- the secure sum of ``n`` clients: a single-target
  inversion (stopped), joint DLG (succeeds exactly when ``n * D < P``) and per-neuron
  closed form on a ReLU first layer (succeeds: secure aggregation hides each update, not
  what the sum encodes);
* :func:`cell_dp_noise_sweep` -- one client's update under central Gaussian noise of
  decreasing signal-to-noise ratio: recognisable at SNR >= 10 (controls), at the data
  set's mean by SNR 0.1.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np

from dp.central import CentralGaussianMechanism
from dp.clipping import clip_l2
from secagg.errors import raise_missing_extra
from threat_models.attacks import gradient_inversion as gi
from threat_models.attacks.metrics import (
    RECOGNISABLE_DB,
    baselines,
    match_reconstructions,
    psnr_matrix,
)
from threat_models.data import Activation, DatasetName, make_mlp, num_parameters
from threat_models.evaluation.context import EvaluationContext
from threat_models.evaluation.rows import (
    CellOutput,
    Family,
    Figure,
    ImagePanel,
    Protection,
    Row,
    Series,
)
from threat_models.evaluation.scoring import (
    describe,
    gaussian_privacy,
    gradient_rows,
    matched_panel,
    panel,
    pick,
    target_leaked,
)

try:
    import torch
    from torch import nn
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.evaluation")

__all__ = [
    "CONTROL_SNR",
    "STOPPED_SNR",
    "cell_plaintext_controls",
    "cell_secure_sum_inversion",
    "cell_dp_noise_sweep",
]

#: Signal-to-noise ratio at and above which the noise sweep is a positive control.
CONTROL_SNR = 10.0
#: Signal-to-noise ratio at and below which the noise must stop every inversion.
STOPPED_SNR = 0.1


def _sweep_expectation(snr: float) -> bool | None:
    """What the sweep claims at ``snr``: the attack succeeds, is stopped, or no claim."""
    if snr >= CONTROL_SNR:
        return True
    return False if snr <= STOPPED_SNR else None


def cell_plaintext_controls(ctx: EvaluationContext) -> CellOutput:
    """Positive controls: one client's plaintext update, batch 1 -- every inversion must succeed."""
    cfg = ctx.config
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    for ds_name in cfg.inversion_datasets:
        data = ctx.dataset(ds_name)
        rng = ctx.rng(100 + list(DatasetName).index(ds_name))
        hidden = 32 if ds_name is DatasetName.DIGITS else 64
        model = make_mlp(
            data.input_size, hidden, data.num_classes, activation=Activation.SIGMOID, seed=cfg.seed
        )
        xs, ys = pick(data, cfg.targets, rng)
        base = baselines(xs, data.images, seed=cfg.seed)
        setting = f"{describe(model, data, Activation.SIGMOID, hidden)}; one client, batch 1"
        results: dict[str, tuple[list[float], list[torch.Tensor], int]] = {
            "closed_form": ([], [], 0),
            "dlg": ([], [], 0),
            "inverting_gradients": ([], [], 0),
        }
        timing = {"closed_form": 0.0, "dlg": 0.0, "inverting_gradients": 0.0}
        for i in range(cfg.targets):
            x, y = xs[i : i + 1], ys[i : i + 1]
            grads = gi.model_gradient(model, x, y)
            start = time.perf_counter()
            cf = gi.first_layer_reconstruction(model, grads, data.image_shape)
            timing["closed_form"] += time.perf_counter() - start
            start = time.perf_counter()
            d = gi.dlg(
                model,
                grads,
                batch_size=1,
                image_shape=data.image_shape,
                iterations=cfg.dlg_iterations,
                seed=cfg.seed + i,
            )
            timing["dlg"] += time.perf_counter() - start
            start = time.perf_counter()
            ig = gi.inverting_gradients(
                model,
                grads,
                batch_size=1,
                image_shape=data.image_shape,
                iterations=cfg.ig_iterations,
                seed=cfg.seed + i,
            )
            timing["inverting_gradients"] += time.perf_counter() - start
            for key, rec, labels in (
                ("closed_form", cf, None),
                ("dlg", d.images, d.labels),
                ("inverting_gradients", ig.images, ig.labels),
            ):
                ps, recs, correct = results[key]
                ps.append(float(psnr_matrix(rec, x)[0, 0]))
                recs.append(rec.detach().clamp(0, 1))
                results[key] = (
                    ps,
                    recs,
                    correct + int(labels is not None and int(labels[0]) == int(y[0])),
                )
        for key, (ps, recs, correct) in results.items():
            ok = target_leaked(ps)
            rows += gradient_rows(
                attack=f"{key} [{ds_name.value}]",
                defense="none (plaintext update)",
                setting=setting,
                psnrs=ps,
                base=base,
                expected=True,
                positive_control=True,
                protection=Protection.NONE,
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
                    protection=Protection.NONE,
                )
            )
            panels.append(
                panel(
                    f"plaintext_{ds_name.value}_{key}",
                    f"{key} on one plaintext update ({ds_name.value}, batch 1)",
                    xs,
                    torch.cat(recs),
                    ps,
                )
            )
    return CellOutput(tuple(rows), tuple(panels))


def _sum_of_clients(
    model: nn.Module, xs: torch.Tensor, ys: torch.Tensor, ctx: EvaluationContext
) -> list[torch.Tensor]:
    """Each image is one client's batch-1 update; the server gets their secure sum."""
    updates = {
        i + 1: gi.flatten(gi.model_gradient(model, xs[i : i + 1], ys[i : i + 1])).numpy()
        for i in range(xs.shape[0])
    }
    total = ctx.aggregator(updates)
    return gi.unflatten_like(
        torch.from_numpy(np.asarray(total, dtype=np.float64)), list(model.parameters())
    )


def cell_secure_sum_inversion(ctx: EvaluationContext) -> CellOutput:
    """Inversion of the secure sum of n clients: single target, joint DLG, ReLU leakage."""
    cfg = ctx.config
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    n = cfg.cohort
    defense = f"secure aggregation (n={n}, {ctx.aggregator_name})"
    for ds_name in cfg.inversion_datasets:
        data = ctx.dataset(ds_name)
        rng = ctx.rng(200 + list(DatasetName).index(ds_name))
        shape = data.image_shape
        xs, ys = pick(data, n, rng)
        base = baselines(xs, data.images, seed=cfg.seed)

        # (1) single-target attack: treat the sum as one client's update
        hidden = 32 if ds_name is DatasetName.DIGITS else 64
        model = make_mlp(
            data.input_size, hidden, data.num_classes, activation=Activation.SIGMOID, seed=cfg.seed
        )
        total = _sum_of_clients(model, xs, ys, ctx)
        setting = (
            f"{describe(model, data, Activation.SIGMOID, hidden)}; n={n} clients, batch 1 each"
        )
        single = {
            "closed_form": gi.first_layer_reconstruction(model, total, shape),
            "dlg": gi.dlg(
                model,
                total,
                batch_size=1,
                image_shape=shape,
                iterations=cfg.dlg_iterations,
                seed=cfg.seed,
            ).images,
            "inverting_gradients": gi.inverting_gradients(
                model,
                total,
                batch_size=1,
                image_shape=shape,
                iterations=cfg.ig_iterations,
                seed=cfg.seed,
            ).images,
        }
        for key, rec in single.items():
            best = float(
                psnr_matrix(rec, xs).max()
            )  # scored against the best-matching client: generous
            rows += gradient_rows(
                attack=f"{key} (single target) [{ds_name.value}]",
                defense=defense,
                setting=setting,
                psnrs=[best],
                base=base,
                expected=False,
                protection=Protection.SECURE_AGGREGATION,
                note="scored against the closest of the n images",
            )
            if ds_name is DatasetName.DIGITS or key == "dlg":
                order = int(np.argmax(psnr_matrix(rec, xs)[0]))
                panels.append(
                    panel(
                        f"sum_single_{ds_name.value}_{key}",
                        f"{key} on a secure sum of {n} ({ds_name.value}): closest client",
                        xs[order : order + 1],
                        rec,
                        [best],
                    )
                )

        # (2) joint reconstruction: feasible when n * D < P, hopeless when n * D > P
        for hidden_j, label in ((hidden, "n*D < P"), (2, "n*D > P")):
            model_j = make_mlp(
                data.input_size,
                hidden_j,
                data.num_classes,
                activation=Activation.SIGMOID,
                seed=cfg.seed,
            )
            params = num_parameters(model_j)
            feasible = n * data.input_size < params
            total_j = _sum_of_clients(model_j, xs, ys, ctx)
            res = gi.dlg(
                model_j,
                total_j,
                batch_size=n,
                image_shape=shape,
                iterations=max(cfg.dlg_iterations, 300),
                seed=cfg.seed,
            )
            match = match_reconstructions(res.images, xs)
            rows += gradient_rows(
                attack=f"dlg joint (all n), {label} [{ds_name.value}]",
                defense=defense,
                setting=f"{describe(model_j, data, Activation.SIGMOID, hidden_j)}; n={n}; "
                f"{label}: n*D={n * data.input_size}, P={params}",
                psnrs=list(match.psnr_db),
                base=base,
                expected=feasible,
                protection=Protection.SECURE_AGGREGATION,
                label_acc=gi.label_accuracy(res.labels, ys, data.num_classes),
                note="matched by Hungarian assignment; label counts from the last bias gradient",
                multi=True,
            )
            panels.append(
                matched_panel(
                    f"sum_joint_{ds_name.value}_{'feasible' if feasible else 'infeasible'}",
                    f"joint DLG on a secure sum of {n} ({ds_name.value}, {label})",
                    xs,
                    res.images,
                    match,
                )
            )

        # (3) a ReLU first layer leaks individual images through the sum
        relu_hidden = 256
        model_r = make_mlp(
            data.input_size,
            relu_hidden,
            data.num_classes,
            activation=Activation.RELU,
            seed=cfg.seed,
        )
        total_r = _sum_of_clients(model_r, xs, ys, ctx)
        weight, bias = gi.first_linear(model_r, total_r)
        cands, _ = gi.closed_form_per_neuron(weight, bias, shape, max_candidates=n)
        match = match_reconstructions(cands, xs)
        rows += gradient_rows(
            attack=f"closed_form per ReLU neuron [{ds_name.value}]",
            defense=defense,
            setting=f"{describe(model_r, data, Activation.RELU, relu_hidden)}; n={n}; "
            "honest random init",
            psnrs=list(match.psnr_db),
            base=base,
            expected=True,
            protection=Protection.SECURE_AGGREGATION,
            note=f"{n} guesses, ranked without ground truth; "
            "a neuron active for one image isolates it",
            multi=True,
        )
        panels.append(
            matched_panel(
                f"sum_relu_{ds_name.value}",
                f"per-neuron closed form on a secure sum of {n} ({ds_name.value}, ReLU)",
                xs,
                cands,
                match,
            )
        )
    return CellOutput(tuple(rows), tuple(panels))


def cell_dp_noise_sweep(ctx: EvaluationContext) -> CellOutput:
    """One client's update, clipped and Gaussian-noised at decreasing signal-to-noise ratios."""
    cfg = ctx.config
    data = ctx.dataset(DatasetName.DIGITS)
    rng = ctx.rng(300)
    hidden = 32
    model = make_mlp(
        data.input_size, hidden, data.num_classes, activation=Activation.RELU, seed=cfg.seed
    )
    params = list(model.parameters())
    shape = data.image_shape
    prior = (data.mean_image()[0], data.images.var(dim=0))
    xs, ys = pick(data, cfg.noise_targets, rng)
    base = baselines(xs, data.images, seed=cfg.seed)
    attacks = ("closed_form", "dlg", "inverting_gradients")
    curves: dict[str, list[float]] = {a: [] for a in attacks}
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    setting_base = describe(model, data, Activation.RELU, hidden)
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
            recs = {
                "closed_form": gi.first_layer_reconstruction(
                    model, grads, shape, noise_std=std, prior=prior
                ),
                "dlg": gi.dlg(
                    model,
                    grads,
                    batch_size=1,
                    image_shape=shape,
                    labels=None,
                    iterations=cfg.dlg_iterations,
                    seed=cfg.seed + i,
                ).images,
                "inverting_gradients": gi.inverting_gradients(
                    model,
                    grads,
                    batch_size=1,
                    image_shape=shape,
                    iterations=cfg.ig_iterations,
                    seed=cfg.seed + i,
                ).images,
            }
            for key, rec in recs.items():
                per_attack[key].append(float(psnr_matrix(rec, x)[0, 0]))
                shown[key].append(rec.detach().clamp(0, 1))
        z_mean = float(np.mean(multipliers))
        privacy = gaussian_privacy(z_mean)  # one noised release of one client's update
        for key in attacks:
            mean = float(np.mean(per_attack[key]))
            curves[key].append(mean)
            expected = _sweep_expectation(snr)
            rows += gradient_rows(
                attack=key,
                defense=f"DP Gaussian noise, SNR={snr:g}",
                setting=f"{setting_base}; clip C=||g||, noise multiplier z={z_mean:.3g}; "
                f"{xs.shape[0]} targets",
                psnrs=per_attack[key],
                base=base,
                expected=expected,
                protection=Protection.DP,
                positive_control=snr >= CONTROL_SNR,
                note="SNR = ||g|| / (z C sqrt(d)), measured ||g|| / ||noise|| = "
                f"{float(np.mean(measured)):.3g}",
                privacy=privacy,
            )
            if level in (0, len(cfg.snr_levels) // 2, len(cfg.snr_levels) - 1):
                panels.append(
                    panel(
                        f"dp_snr_{snr:g}_{key}".replace(".", "p"),
                        f"{key} at SNR {snr:g}",
                        xs,
                        torch.cat(shown[key]),
                        per_attack[key],
                    )
                )
    tolerance = 1.0
    for key in attacks:
        ys_ = curves[key]
        # falls monotonically (within the tolerance) until it reaches the baseline, where
        # run-to-run noise of a few tenths of a dB no longer means anything
        floor = base.dataset_mean_db + tolerance
        monotone = all(b <= a + tolerance or b <= floor for a, b in zip(ys_, ys_[1:], strict=False))
        at_baseline = [
            s
            for s, v in zip(cfg.snr_levels, ys_, strict=True)
            if v <= base.dataset_mean_db + tolerance
        ]
        trend = Row(
            family=Family.GRADIENT_INVERSION,
            attack=key,
            defense="DP Gaussian noise sweep",
            setting=setting_base,
            metric="psnr_monotone_in_noise",
            value=float(monotone),
            baseline=1.0,
            baseline_name="required",
            succeeded=monotone,
            expected=True,
            primary=False,
            note=f"within {tolerance} dB, down to the dataset-mean baseline",
            protection=Protection.DP,
        )
        rows.append(trend)
        rows.append(
            replace(
                trend,
                metric="largest_snr_at_baseline",
                value=float(max(at_baseline)) if at_baseline else math.nan,
                baseline=0.1,
                baseline_name="expected about",
                succeeded=bool(at_baseline),
                expected=None,
                note="largest SNR whose mean PSNR is within 1 dB of the dataset-mean baseline",
            )
        )
    figure = Figure(
        name="psnr_vs_noise",
        title=f"Reconstruction quality against signal-to-noise ratio ({setting_base})",
        xlabel="signal-to-noise ratio ||g|| / ||noise||",
        ylabel="PSNR (dB)",
        series=tuple(Series(k, tuple(cfg.snr_levels), tuple(v)) for k, v in curves.items()),
        hlines=(
            ("dataset mean", base.dataset_mean_db),
            ("random image", base.random_image_db),
            ("recognisable (20 dB)", RECOGNISABLE_DB),
        ),
        logx=True,
    )
    return CellOutput(tuple(rows), tuple(panels), (figure,))
