"""Gradient-inversion cells: what the server reads out of updates and their secure sums.

* :func:`cell_plaintext_controls` -- the positive controls: one client's plaintext update
  (batch 1), which the closed form, DLG and Inverting Gradients must all invert on the
  MLP, and DLG and Inverting Gradients on a small CNN (:func:`~threat_models.data.make_cnn`;
  one target in quick mode);
* :func:`cell_secure_sum_inversion` -- the secure sum of ``n`` clients: a single-target
  inversion (stopped), joint DLG at the cohorts of :func:`joint_cohorts` on one model
  (succeeds at n = 8; no claim where ``n * D < P`` is merely possible; stopped where
  ``n * D > P``), with labels from the bias gradient and the model's mean prediction,
  and per-neuron closed form on a ReLU first layer (succeeds: secure aggregation hides
  each update, not what the sum encodes);
* :func:`cell_dp_noise_sweep` -- one client's update under central Gaussian noise of
  decreasing signal-to-noise ratio: recognisable at SNR >= 10 (controls), at the data
  set's mean by SNR 0.1.

Every ``best_psnr_db`` row has a ``best_ssim`` row beside it (SSIM of the same attack's
best target by SSIM, Wang et al. 2004; no threshold: the verdict stays the PSNR rule's).
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
    Matching,
    baselines,
    match_reconstructions,
    psnr_matrix,
    ssim,
    ssim_matrix,
)
from threat_models.data import (
    Activation,
    DatasetName,
    ImageData,
    make_cnn,
    make_mlp,
    num_parameters,
)
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
    "CNN_TARGETS_QUICK",
    "CNN_IG_TV_WEIGHT",
    "CNN_IG_LEARNING_RATE",
    "STOPPED_SNR",
    "cell_plaintext_controls",
    "cell_secure_sum_inversion",
    "cell_dp_noise_sweep",
    "joint_cohorts",
    "with_ssim",
]

#: Signal-to-noise ratio at and above which the noise sweep is a positive control.
CONTROL_SNR = 10.0
#: Signal-to-noise ratio at and below which the noise must stop every inversion.
STOPPED_SNR = 0.1


def joint_cohorts(quick: bool) -> tuple[int, ...]:
    """Cohorts of the joint inversion of a secure sum (quick mode: the two smaller)."""
    return (8, 32) if quick else (8, 32, 128)


def _joint_iterations(n: int, feasible: bool, quick: bool, dlg_iterations: int) -> int:
    """L-BFGS budget of joint DLG on a sum of ``n``: more where ``n * D < P`` is hard."""
    if n <= 8:
        return max(dlg_iterations, 300)
    return 1000 if feasible and not quick else 300


def with_ssim(
    rows: list[Row], ssims: list[float] | np.ndarray, free: list[float] | np.ndarray
) -> list[Row]:
    """``rows`` with a ``best_ssim`` row after their ``best_psnr_db`` row.

    Args:
        rows: the rows of one attack against one defense (:func:`gradient_rows`).
        ssims: per attacked target, the SSIM of its reconstruction.
        free: per target, the SSIM of the data set's mean image (the trivial attacker).

    The row takes its verdict from the ``best_psnr_db`` row (it states no threshold of its
    own) and is not primary.
    """
    out: list[Row] = []
    for row in rows:
        out.append(row)
        if row.metric == "best_psnr_db":
            out.append(
                replace(
                    row,
                    metric="best_ssim",
                    value=float(np.max(ssims)),
                    baseline=float(np.max(free)),
                    baseline_name="dataset_mean_best_ssim",
                    primary=False,
                    threshold=None,
                    threshold_above=True,
                    note=f"SSIM (Gaussian window, Wang et al. 2004), best of {len(ssims)} targets",
                )
            )
    return out


def _free_ssim(data_mean: torch.Tensor, xs: torch.Tensor) -> list[float]:
    """Per target, the SSIM of the data set's mean image."""
    return [ssim(data_mean[0], xs[i]) for i in range(xs.shape[0])]


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
        ssims: dict[str, list[float]] = {key: [] for key in timing}
        free_ssim = _free_ssim(data.mean_image(), xs)
        for i in range(cfg.targets):
            x, y = xs[i : i + 1], ys[i : i + 1]
            grads = gi.model_gradient(model, x, y)
            start = time.perf_counter()
            cf = gi.first_layer_reconstruction(model, grads, data.image_shape)
            timing["closed_form"] += time.perf_counter() - start
            found: list[tuple[str, torch.Tensor, torch.Tensor | None]] = [("closed_form", cf, None)]
            for key, attack, iterations in (
                ("dlg", gi.dlg, cfg.dlg_iterations),
                ("inverting_gradients", gi.inverting_gradients, cfg.ig_iterations),
            ):
                start = time.perf_counter()
                out = attack(
                    model,
                    grads,
                    batch_size=1,
                    image_shape=data.image_shape,
                    iterations=iterations,
                    seed=cfg.seed + i,
                )
                timing[key] += time.perf_counter() - start
                found.append((key, out.images, out.labels))
            for key, rec, labels in found:
                ps, recs, correct = results[key]
                ps.append(float(psnr_matrix(rec, x)[0, 0]))
                ssims[key].append(ssim(rec[0], x[0]))
                recs.append(rec.detach().clamp(0, 1))
                results[key] = (
                    ps,
                    recs,
                    correct + int(labels is not None and int(labels[0]) == int(y[0])),
                )
        for key, (ps, recs, correct) in results.items():
            ok = target_leaked(ps)
            rows += with_ssim(
                gradient_rows(
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
                ),
                ssims[key],
                free_ssim,
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
        cnn_rows, cnn_panels = _cnn_controls(
            ctx, data, xs[:CNN_TARGETS_QUICK] if cfg.quick else xs, ys
        )
        rows += cnn_rows
        panels += cnn_panels
    return CellOutput(tuple(rows), tuple(panels))


#: Targets of the CNN's plaintext controls in quick mode (full mode: every target).
CNN_TARGETS_QUICK = 1
#: Inverting Gradients on the CNN: no TV prior (on these small images its weight swamps
#: the cosine loss, 16-22 dB with the MLPs' 1e-4 against ~100 dB without) and a smaller step.
CNN_IG_TV_WEIGHT = 0.0
CNN_IG_LEARNING_RATE = 0.03


def _cnn_controls(
    ctx: EvaluationContext, data: ImageData, xs: torch.Tensor, ys: torch.Tensor
) -> tuple[list[Row], list[ImagePanel]]:
    """DLG and Inverting Gradients on one client's plaintext update of the small CNN."""
    cfg = ctx.config
    model = make_cnn(
        data.image_shape, data.num_classes, activation=Activation.SIGMOID, seed=cfg.seed
    )
    setting = (
        f"{data.name.value}, CNN conv3x3(8)-conv3x3/2(8)-linear sigmoid, "
        f"P={num_parameters(model)}; one client, batch 1"
    )
    base = baselines(xs, data.images, seed=cfg.seed)
    free = _free_ssim(data.mean_image(), xs)
    scores: dict[str, tuple[list[float], list[float], list[torch.Tensor], int]] = {
        "dlg": ([], [], [], 0),
        "inverting_gradients": ([], [], [], 0),
    }
    for i in range(xs.shape[0]):
        x, y = xs[i : i + 1], ys[i : i + 1]
        grads = gi.model_gradient(model, x, y)
        results = {
            "dlg": gi.dlg(
                model,
                grads,
                batch_size=1,
                image_shape=data.image_shape,
                iterations=cfg.dlg_iterations,
                seed=cfg.seed + i,
            ),
            "inverting_gradients": gi.inverting_gradients(
                model,
                grads,
                batch_size=1,
                image_shape=data.image_shape,
                iterations=cfg.ig_iterations,
                learning_rate=CNN_IG_LEARNING_RATE,
                tv_weight=CNN_IG_TV_WEIGHT,
                seed=cfg.seed + i,
            ),
        }
        for key, res in results.items():
            ps, ss, recs, correct = scores[key]
            ps.append(float(psnr_matrix(res.images, x)[0, 0]))
            ss.append(ssim(res.images[0], x[0]))
            recs.append(res.images.detach().clamp(0, 1))
            scores[key] = (ps, ss, recs, correct + int(int(res.labels[0]) == int(y[0])))
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    for key, (ps, ss, recs, correct) in scores.items():
        rows += with_ssim(
            gradient_rows(
                attack=f"{key} CNN [{data.name.value}]",
                defense="none (plaintext update)",
                setting=setting,
                psnrs=ps,
                base=base,
                expected=True,
                positive_control=True,
                protection=Protection.NONE,
                label_acc=correct / len(ps),
                note="labels by iDLG"
                + ("; no TV prior, Adam step 0.03" if key == "inverting_gradients" else ""),
            ),
            ss,
            free,
        )
        panels.append(
            panel(
                f"plaintext_{data.name.value}_cnn_{key}",
                f"{key} on one plaintext update of the CNN ({data.name.value}, batch 1)",
                xs,
                torch.cat(recs),
                ps,
            )
        )
    return rows, panels


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


def _prior_probes(data: ImageData, seed: int, count: int = 256) -> torch.Tensor:
    """Images drawn from the per-pixel Gaussian prior (mean, variance) a server has."""
    gen = torch.Generator().manual_seed(seed)
    mean, std = data.mean_image()[0], data.images.var(dim=0).sqrt()
    noise = torch.randn((count, *data.image_shape), generator=gen)
    return (mean + std * noise).clamp(0.0, 1.0)


def _matched_ssim(
    candidates: torch.Tensor, originals: torch.Tensor, match: Matching
) -> list[float]:
    """Per original, the SSIM of its matched candidate (0 when it has none)."""
    return [
        ssim(candidates[k], originals[i]) if k >= 0 else 0.0
        for i, k in enumerate(match.candidate_index.tolist())
    ]


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
        free_ssim = _free_ssim(data.mean_image(), xs)
        for key, rec in single.items():
            best = float(
                psnr_matrix(rec, xs).max()
            )  # scored against the best-matching client: generous
            rows += with_ssim(
                gradient_rows(
                    attack=f"{key} (single target) [{ds_name.value}]",
                    defense=defense,
                    setting=setting,
                    psnrs=[best],
                    base=base,
                    expected=False,
                    protection=Protection.SECURE_AGGREGATION,
                    note="scored against the closest of the n images",
                ),
                [float(ssim_matrix(rec, xs).max())],
                free_ssim,
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

        # (2) joint reconstruction of every client at growing cohorts, on the same model:
        # possible while n * D < P, hopeless once n * D > P
        params = num_parameters(model)
        prior_probes = _prior_probes(data, cfg.seed)
        for cohort in joint_cohorts(cfg.quick):
            if cohort == n:
                xs_j, ys_j, base_j, free_j = xs, ys, base, free_ssim
                total_j = total
            else:
                xs_j, ys_j = pick(
                    data, cohort, ctx.rng(210 + 10 * cohort + list(DatasetName).index(ds_name))
                )
                base_j = baselines(xs_j, data.images, seed=cfg.seed)
                free_j = _free_ssim(data.mean_image(), xs_j)
                total_j = _sum_of_clients(model, xs_j, ys_j, ctx)
            feasible = cohort * data.input_size < params
            label = "n*D < P" if feasible else "n*D > P"
            _, last_bias = gi.last_linear(model, total_j)
            labels = gi.infer_labels_from_model(
                model, last_bias, cohort, shape, probes=prior_probes
            )
            res = gi.dlg(
                model,
                total_j,
                batch_size=cohort,
                image_shape=shape,
                labels=labels,
                iterations=_joint_iterations(cohort, feasible, cfg.quick, cfg.dlg_iterations),
                seed=cfg.seed,
            )
            match = match_reconstructions(res.images, xs_j)
            # n = 8 is the control; a larger n with n*D < P is possible, not assured (no claim)
            expected = True if cohort <= 8 and feasible else (None if feasible else False)
            rows += with_ssim(
                gradient_rows(
                    attack=f"dlg joint (all n), n={cohort}, {label} [{ds_name.value}]",
                    defense=f"secure aggregation (n={cohort}, {ctx.aggregator_name})",
                    setting=f"{describe(model, data, Activation.SIGMOID, hidden)}; n={cohort}; "
                    f"{label}: n*D={cohort * data.input_size}, P={params}",
                    psnrs=list(match.psnr_db),
                    base=base_j,
                    expected=expected,
                    protection=Protection.SECURE_AGGREGATION,
                    label_acc=gi.label_accuracy(res.labels, ys_j, data.num_classes),
                    note="matched by Hungarian assignment; label counts from the last bias "
                    "gradient and the model's mean prediction on prior draws",
                    multi=True,
                ),
                _matched_ssim(res.images, xs_j, match),
                free_j,
            )
            panels.append(
                matched_panel(
                    f"sum_joint_{ds_name.value}_n{cohort}",
                    f"joint DLG on a secure sum of {cohort} ({ds_name.value}, {label})",
                    xs_j,
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
        relu_rows = gradient_rows(
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
        rows += with_ssim(relu_rows, _matched_ssim(cands, xs, match), free_ssim)
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
    free_ssim = _free_ssim(data.mean_image(), xs)
    attacks = ("closed_form", "dlg", "inverting_gradients")
    curves: dict[str, list[float]] = {a: [] for a in attacks}
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    setting_base = describe(model, data, Activation.RELU, hidden)
    dim = num_parameters(model)
    for level, snr in enumerate(cfg.snr_levels):
        per_attack: dict[str, list[float]] = {a: [] for a in attacks}
        shown: dict[str, list[torch.Tensor]] = {a: [] for a in attacks}
        per_ssim: dict[str, list[float]] = {a: [] for a in attacks}
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
                per_ssim[key].append(ssim(rec[0], x[0]))
                shown[key].append(rec.detach().clamp(0, 1))
        z_mean = float(np.mean(multipliers))
        privacy = gaussian_privacy(z_mean)  # one noised release of one client's update
        for key in attacks:
            mean = float(np.mean(per_attack[key]))
            curves[key].append(mean)
            expected = _sweep_expectation(snr)
            rows += with_ssim(
                gradient_rows(
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
                ),
                per_ssim[key],
                free_ssim,
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
