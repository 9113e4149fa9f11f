"""Model-level cells: a malicious server that chooses the model, the cohort or the clients.

The attacks of :mod:`threat_models.attacks.model_level`, each against secure aggregation
alone and with distributed DP on top (noise from the library's own encoder, sums from a
real round):

* :func:`cell_model_inconsistency` -- different models to different clients; the
  hardened protocol binds the model hash into the signed keys and aborts the round;
* :func:`cell_sybil` -- the server runs every client but the target; no masking protocol
  stops it, distributed DP sized for honest clients leaves only the target's own share;
* :func:`cell_trap_weights` -- the same malicious model to everyone, so consistency
  checks pass;
* :func:`cell_disaggregation` -- overlapping cohorts over rounds, solved by least squares.

Distributed DP is run at a sweep of target SNRs (:func:`sweep_snrs`), each level a row
with its own epsilon, so each attack's privacy-utility curve shows where it stops. One
level per attack states the claim the cell makes about distributed DP (SNR 0.1; 0.3 for
Sybil); the others are measured without a claim (``expected=None``). The SNR is fixed, so
it is in the rows' labels; the noise multiplier it gives depends on the seed's data, so it
is in the note only, and the rows of the same level merge across seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from dp.distributed import DistributedDPEncoder, DistributedMechanism, select_parameters
from protocols.masking.config import Hardening
from secagg.errors import SecAggError, raise_missing_extra
from threat_models.attacks import gradient_inversion as gi
from threat_models.attacks import model_level as ml
from threat_models.attacks.aggregation import model_hash, ring_sum, secure_ring_sum, secure_sum
from threat_models.attacks.metrics import Baselines, baselines, match_reconstructions
from threat_models.data import Activation, DatasetName, make_mlp, split_indices
from threat_models.evaluation.context import EvaluationContext
from threat_models.evaluation.rows import CellOutput, Family, ImagePanel, Protection, Row
from threat_models.evaluation.scoring import (
    describe,
    gaussian_privacy,
    gradient_rows,
    image_psnr,
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
    "SWEEP_SNRS",
    "SYBIL_SWEEP_SNRS",
    "QUICK_SWEEP_SNRS",
    "sweep_snrs",
    "cell_model_inconsistency",
    "cell_sybil",
    "cell_trap_weights",
    "cell_disaggregation",
]

F64 = npt.NDArray[np.float64]

_DDP_BITS = 32


def _ddp_encoder(
    ctx: EvaluationContext,
    salt: int,
    *,
    z: float,
    clip: float,
    n: int,
    dim: int,
    colluding_fraction: float = 0.0,
) -> DistributedDPEncoder:
    params = select_parameters(
        mechanism=DistributedMechanism.DISCRETE_GAUSSIAN,
        noise_multiplier=z,
        clip_norm=clip,
        bits=_DDP_BITS,
        expected_clients=n,
        dimension=dim,
        colluding_fraction=colluding_fraction,
    )
    return DistributedDPEncoder(
        params, rotation_seed=ctx.seed_bytes(salt), rounding_rng=ctx.rng(salt)
    )


def _ddp_round(
    encoder: DistributedDPEncoder,
    updates: Mapping[int, F64],
    *,
    server_controlled: Sequence[int] = (),
) -> F64:
    """One real round with distributed DP: clients encode (clip, rotate, scale, round, add
    their noise share) and mask; server-run clients send zeros; the server decodes."""
    padded = encoder.parameters.padded_dimension
    encodings = {
        cid: (
            np.zeros(padded, dtype=np.uint64) if cid in server_controlled else encoder.encode(vec)
        )
        for cid, vec in updates.items()
    }
    if len(encodings) > 1:
        total = secure_ring_sum(encodings, bits=_DDP_BITS)
    else:
        total = ring_sum(encodings, _DDP_BITS)
    return np.asarray(encoder.decode_sum(total, len(encodings)), dtype=np.float64)


def _z_for_snr(snr: float, dim: int, clip: float, norm: float) -> float:
    """Noise multiplier giving ``||g|| / (z C sqrt(d)) = snr``."""
    return norm / (snr * clip * math.sqrt(dim))


#: Target SNRs of the distributed-DP sweep in a full run, from weak noise to strong: each
#: closed-form model-level attack (model inconsistency, trap weights, disaggregation) meets
#: distributed DP at each of them, so its privacy-utility curve shows the epsilon at which
#: it stops (trap weights stop between SNR 100 and 30, model inconsistency between 3 and
#: 1, disaggregation between 1 and 0.3).
SWEEP_SNRS = (100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.03)
#: The full sweep of the Sybil attack, which runs DLG at every level: both of its noised
#: defences leak at SNR 1, the one sized for honest clients down to about 0.1 (n = 64).
SYBIL_SWEEP_SNRS = (1.0, 0.3, 0.1, 0.03)
#: The sweep of a quick run, per attack: one level on each side of where it stops (and
#: the claimed level).
QUICK_SWEEP_SNRS: dict[str, tuple[float, ...]] = {
    "model inconsistency": (3.0, 0.1),
    "Sybil": (1.0, 0.3, 0.1),
    "trap/imprint weights": (100.0, 0.1),
    "disaggregation across rounds": (1.0, 0.1),
}


def sweep_snrs(
    ctx: EvaluationContext, attack: str, claim: float, full: Sequence[float] = SWEEP_SNRS
) -> tuple[float, ...]:
    """The target SNRs ``attack`` meets distributed DP at, from weak noise to strong.

    ``full`` in a full run, :data:`QUICK_SWEEP_SNRS` in a quick one; always including
    ``claim``, the level at which the cell states what distributed DP does (its row keeps
    its expectation; the other levels are measured without one).
    """
    levels = set(QUICK_SWEEP_SNRS[attack] if ctx.config.quick else full) | {claim}
    return tuple(sorted(levels, reverse=True))


def _level_salt(salt: int, snr: float, claim: float) -> int:
    """The random stream of one sweep level: the cell's own ``salt`` at the claimed level
    (its rows are those of a run without the sweep), a stream of its own at the others
    (salts below 1,000, SNRs apart by at least 0.01)."""
    return salt if snr == claim else salt + 1_000 * (1 + round(100 * snr))


def _model_bytes(model: nn.Module) -> bytes:
    return b"".join(p.detach().to(torch.float32).numpy().tobytes() for p in model.parameters())


def cell_model_inconsistency(ctx: EvaluationContext) -> CellOutput:
    """Different models to different clients: the target's update comes out of the sum alone.

    Runs :func:`~threat_models.attacks.model_level.model_inconsistency_attack` through the
    real protocol with per-client model hashes (baseline: keys signed without the model
    hash; hardened: with it, so the round aborts), then against distributed DP at each
    level of :func:`sweep_snrs` (the closed form with its Wiener shrinkage to the prior).
    """
    cfg = ctx.config
    data = ctx.dataset(DatasetName.DIGITS)
    rng = ctx.rng(500)
    n, hidden = cfg.cohort, 64
    model = make_mlp(
        data.input_size, hidden, data.num_classes, activation=Activation.RELU, seed=cfg.seed
    )
    parts = split_indices(len(data), n, 1, rng=rng)
    batches = {i + 1: (data.images[p], data.labels[p]) for i, p in enumerate(parts)}
    target = 1
    x = batches[target][0]
    base = baselines(x, data.images, seed=cfg.seed)
    setting = (
        f"{describe(model, data, Activation.RELU, hidden)}; n={n}, target batch 1; "
        "others get a dead-first-layer model"
    )
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    attack = "model inconsistency"

    # the real protocol with per-client model hashes: baseline (no model binding) vs hardened
    dead = ml.dead_first_layer_model(model)
    hashes = {cid: model_hash(_model_bytes(model if cid == target else dead)) for cid in batches}
    for hardened in (False, True):
        if hardened:
            hardening = Hardening()
            defense = "SecAgg, keys signed over the round and the model hash (hardened)"
            protection = Protection.SECURE_AGGREGATION
        else:
            hardening = replace(Hardening(), model_bound_signatures=False)
            defense = "SecAgg, signed keys without the model hash (baseline)"
            protection = Protection.UNHARDENED

        def round_sum(updates: Mapping[int, F64], hardening: Hardening = hardening) -> F64:
            return secure_sum(updates, protocol="secagg", hardening=hardening, model_hash=hashes)

        try:
            result = ml.model_inconsistency_attack(
                model, target, batches, round_sum, image_shape=data.image_shape
            )
        except SecAggError as exc:
            rows.append(
                Row(
                    family=Family.MODEL_LEVEL,
                    attack=attack,
                    defense=defense,
                    setting=setting,
                    metric="round_aborted",
                    value=1.0,
                    baseline=0.0,
                    baseline_name="honest round",
                    succeeded=False,
                    expected=not hardened,
                    note="clients refused peers' keys signed over another model: "
                    f"{type(exc).__name__}",
                    protection=protection,
                )
            )
            continue
        rec = result.reconstruction
        p = image_psnr(rec, x)
        rows += gradient_rows(
            family=Family.MODEL_LEVEL,
            attack=attack,
            defense=defense,
            setting=setting,
            psnrs=[p],
            base=base,
            expected=not hardened,
            protection=protection,
            positive_control=not hardened,
            note="the round completed; closed form on the first layer of the sum",
        )
        panels.append(
            panel(
                f"model_inconsistency_protocol_{int(hardened)}",
                f"model inconsistency: {defense}",
                x,
                rec,
                [p],
            )
        )

    # distributed DP: the other clients still add their noise shares (z sized for the cohort),
    # at each level of the sweep; the claim is made at target SNR 0.1
    updates = ml.client_updates(
        {cid: (model if cid == target else dead) for cid in batches}, batches
    )
    dim = updates[target].size
    clip = max(float(np.linalg.norm(u)) for u in updates.values())
    claim = 0.1
    for snr in sweep_snrs(ctx, attack, claim):
        z = _z_for_snr(snr, dim, clip, float(np.linalg.norm(updates[target])))
        encoder = _ddp_encoder(ctx, _level_salt(501, snr, claim), z=z, clip=clip, n=n, dim=dim)

        def noised_sum(cohort: Mapping[int, F64], encoder: DistributedDPEncoder = encoder) -> F64:
            return _ddp_round(encoder, cohort)

        result = ml.model_inconsistency_attack(
            model,
            target,
            batches,
            noised_sum,
            image_shape=data.image_shape,
            noise_std=encoder.parameters.aggregate_error_stddev(n),
            prior=(data.mean_image()[0], data.images.var(dim=0)),
        )
        rec = result.reconstruction
        p = image_psnr(rec, x)
        rows += gradient_rows(
            family=Family.MODEL_LEVEL,
            attack=attack,
            defense=f"secure aggregation + distributed DP (sized for n={n}, target SNR {snr:g})",
            setting=setting + f"; target SNR {snr:g}",
            note=f"z={z:.3g}",
            psnrs=[p],
            base=base,
            expected=False if snr == claim else None,
            protection=Protection.SECURE_AGGREGATION_DP,
            privacy=gaussian_privacy(z),  # one round: the target's update is released once
        )
        if snr == claim:
            panels.append(
                panel(
                    "model_inconsistency_ddp",
                    "model inconsistency against distributed DP",
                    x,
                    rec,
                    [p],
                )
            )
    return CellOutput(tuple(rows), tuple(panels))


@dataclass(frozen=True)
class _SybilCase:
    """One defense the Sybil attack meets, and what the harness claims about it."""

    protection: Protection
    expected: bool
    positive_control: bool = False


@dataclass
class _SybilScores:
    """Per attacked image: its PSNR, the noise left on the isolated update, the noise the
    defense intended, the reconstruction; the defense's noise multiplier (0 for none)."""

    defense: str = ""
    noise_multiplier: float = 0.0
    psnrs: list[float] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)
    intended: list[float] = field(default_factory=list)
    reconstructions: list[torch.Tensor] = field(default_factory=list)


_SYBIL_CASES = (
    # secure aggregation alone: exact isolation
    _SybilCase(Protection.SECURE_AGGREGATION, expected=True, positive_control=True),
    # distributed DP sized for n honest clients: only the target's own share is left
    _SybilCase(Protection.SECURE_AGGREGATION_DP, expected=True),
    # distributed DP sized for the Sybils: every client adds the full noise itself
    _SybilCase(Protection.DP, expected=False),
)


def _sybil_estimate(
    ctx: EvaluationContext,
    case: _SybilCase,
    g: F64,
    *,
    image: int,
    snr: float,
    claim: float,
    n: int,
) -> tuple[str, F64, float, float, float]:
    """What the server isolates of the target's update ``g`` under one Sybil case at target
    SNR ``snr``: the defense, the estimate, its per-coordinate noise std, the intended std
    ``z C`` (0 without noise) and ``z`` (0 without noise)."""
    target, sybils = 1, list(range(2, n + 1))
    zeros = {s: np.zeros(g.size) for s in sybils}
    if case.protection is Protection.SECURE_AGGREGATION:
        defense = f"secure aggregation, any variant ({ctx.aggregator_name})"
        return defense, ml.sybil_attack(g, zeros, ctx.aggregator, target=target), 0.0, 0.0, 0.0
    dim, clip = g.size, float(np.linalg.norm(g))
    z = _z_for_snr(snr, dim, clip, clip)
    if case.protection is Protection.SECURE_AGGREGATION_DP:
        defense = f"secure aggregation + distributed DP sized for {n} honest clients"
        enc = _ddp_encoder(ctx, _level_salt(610 + image, snr, claim), z=z, clip=clip, n=n, dim=dim)
    else:
        defense = "distributed DP sized for n-1 colluders (local noise)"
        salt = _level_salt(620 + image, snr, claim)
        enc = _ddp_encoder(ctx, salt, z=z, clip=clip, n=n, dim=dim, colluding_fraction=(n - 1) / n)
    vec = _ddp_round(enc, {target: g, **zeros}, server_controlled=sybils)
    return defense, vec, enc.parameters.local_stddev, z * clip, z


def cell_sybil(ctx: EvaluationContext) -> CellOutput:
    """Sybils: the server runs every client but the target.

    Each noised defense meets the attack at every level of :func:`sweep_snrs` (the claim
    at intended target SNR 0.3; quick runs add 0.1 so the curve shows where the defense
    sized for honest clients stops); the attacker is the best of the closed form with its
    Wiener shrinkage to the data's prior and DLG at every level.
    """
    cfg = ctx.config
    data = ctx.dataset(DatasetName.DIGITS)
    rng = ctx.rng(600)
    hidden = 32
    n = 64 if not cfg.quick else 32
    model = make_mlp(
        data.input_size, hidden, data.num_classes, activation=Activation.RELU, seed=cfg.seed
    )
    params = list(model.parameters())
    xs, ys = pick(data, cfg.targets, rng)
    base = baselines(xs, data.images, seed=cfg.seed)
    setting = (
        f"{describe(model, data, Activation.RELU, hidden)}; cohort n={n}: "
        f"1 honest target + {n - 1} Sybils"
    )
    prior = (data.mean_image()[0], data.images.var(dim=0))
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    claim = 0.3
    levels = sweep_snrs(ctx, "Sybil", claim, full=SYBIL_SWEEP_SNRS)
    # (case, level): the noiseless case has one level, the claim's
    scores = {
        (k, snr): _SybilScores()
        for k, case in enumerate(_SYBIL_CASES)
        for snr in (levels if case.protection is not Protection.SECURE_AGGREGATION else (claim,))
    }
    for i in range(xs.shape[0]):
        x, y = xs[i : i + 1], ys[i : i + 1]
        g = gi.flatten(gi.model_gradient(model, x, y)).numpy()
        for (k, snr), score in scores.items():
            defense, vec, std, intended, z = _sybil_estimate(
                ctx, _SYBIL_CASES[k], g, image=i, snr=snr, claim=claim, n=n
            )
            grads = gi.unflatten_like(torch.from_numpy(vec), params)
            rec = gi.first_layer_reconstruction(
                model, grads, data.image_shape, noise_std=std, prior=prior
            )
            if std > 0:
                dl = gi.dlg(
                    model,
                    grads,
                    batch_size=1,
                    image_shape=data.image_shape,
                    iterations=cfg.dlg_iterations,
                    seed=cfg.seed + i,
                ).images
                if image_psnr(dl, x) > image_psnr(rec, x):
                    rec = dl
            score.defense = score.defense or defense
            score.noise_multiplier = z
            score.psnrs.append(image_psnr(rec, x))
            score.residuals.append(float(np.std(vec - g)))
            score.intended.append(intended)
            score.reconstructions.append(rec.detach().clamp(0, 1))
    for k, case in enumerate(_SYBIL_CASES):
        for (case_index, snr), score in scores.items():
            if case_index == k:
                rows += _sybil_rows(case, score, setting, base, n=n, snr=snr, claim=claim)
        shown = scores[k, claim]
        recs = torch.cat(shown.reconstructions)
        panels.append(panel(f"sybil_{k}", f"Sybil attack: {shown.defense}", xs, recs, shown.psnrs))
    return CellOutput(tuple(rows), tuple(panels))


def _sybil_rows(
    case: _SybilCase,
    score: _SybilScores,
    setting: str,
    base: Baselines,
    *,
    n: int,
    snr: float,
    claim: float,
) -> list[Row]:
    """The rows of one Sybil case at one level: the claimed level keeps the case's
    expectation and its residual-noise row, the other levels are measured without a claim."""
    psnrs = score.psnrs
    at_claim = snr == claim
    # each target is one client, released once; the accountant's epsilon at z assumes
    # the noise of every share reaches the target's update
    privacy = gaussian_privacy(score.noise_multiplier) if score.noise_multiplier else None
    cell_rows = gradient_rows(
        family=Family.MODEL_LEVEL,
        attack="Sybil",
        defense=score.defense,
        setting=setting + f"; intended target SNR {snr:g}",
        psnrs=psnrs,
        base=base,
        expected=case.expected if at_claim else None,
        protection=case.protection,
        positive_control=case.positive_control,
        note="best of closed form (Wiener) and DLG"
        + (f"; z={score.noise_multiplier:.3g}" if score.noise_multiplier else ""),
        privacy=privacy,
    )
    if case.protection is not Protection.SECURE_AGGREGATION and at_claim:  # a noised defense
        residual = float(np.mean(score.residuals))
        intended = float(np.mean(score.intended))
        if case.protection is Protection.SECURE_AGGREGATION_DP:
            own = gaussian_privacy(score.noise_multiplier / math.sqrt(n))
            note = (
                f"ratio {residual / intended:.3f} vs 1/sqrt(n) = {1 / math.sqrt(n):.3f}: "
                "the target's own share is all that is left (its epsilon against the "
                f"Sybils: {own.epsilon:.3g}, not the accounted one)"
            )
        else:
            note = "each client's own noise is the full z*C"
        residual_row = Row(
            family=Family.MODEL_LEVEL,
            attack="Sybil",
            defense=score.defense,
            setting=setting,
            metric="residual_noise_std",
            value=residual,
            baseline=intended,
            baseline_name="intended noise std z*C",
            succeeded=target_leaked(psnrs),
            expected=case.expected,
            primary=False,
            note=note,
            protection=case.protection,
        )
        cell_rows.append(privacy.apply(residual_row) if privacy else residual_row)
    return cell_rows


def cell_trap_weights(ctx: EvaluationContext) -> CellOutput:
    """Imprint / trap weights sent to every client: individual images out of the aggregate."""
    cfg = ctx.config
    data = ctx.dataset(DatasetName.DIGITS)
    rng = ctx.rng(700)
    n, batch, bins = cfg.cohort, 4, 256
    honest = make_mlp(
        data.input_size, bins, data.num_classes, activation=Activation.RELU, seed=cfg.seed
    )
    public = data.images[torch.as_tensor(rng.choice(len(data), size=500, replace=False))]
    trap = ml.imprint_model(honest, public, seed=cfg.seed)
    parts = split_indices(len(data), n, batch, rng=rng)
    batches = {i + 1: (data.images[p], data.labels[p]) for i, p in enumerate(parts)}
    xs = torch.cat([batches[c][0] for c in sorted(batches)])
    base = baselines(xs, data.images, seed=cfg.seed)
    setting = (
        f"digits, trap MLP {data.input_size}-{bins}-10 relu (same shapes as the honest model); "
        f"n={n} clients x batch {batch} = {n * batch} images"
    )
    panels: list[ImagePanel] = []
    updates = ml.client_updates({c: trap for c in batches}, batches)
    aggregate = ctx.aggregator(updates)
    cands, _ = ml.imprint_reconstruct(
        trap, torch.from_numpy(aggregate), data.image_shape, max_candidates=n * batch
    )
    match = match_reconstructions(cands, xs)
    rows = gradient_rows(
        family=Family.MODEL_LEVEL,
        attack="trap/imprint weights",
        defense=f"secure aggregation, model consistency checks pass ({ctx.aggregator_name})",
        setting=setting,
        psnrs=list(match.psnr_db),
        base=base,
        expected=True,
        protection=Protection.SECURE_AGGREGATION,
        positive_control=True,
        multi=True,
        note="the same malicious model goes to every client",
    )
    panels.append(
        matched_panel("trap_secagg", "trap weights through secure aggregation", xs, cands, match)
    )
    # distributed DP on the same round, at each level of the sweep (the claim: SNR 0.1)
    dim = next(iter(updates.values())).size
    clip = max(float(np.linalg.norm(u)) for u in updates.values())
    mean_norm = float(np.mean([np.linalg.norm(u) for u in updates.values()]))
    claim = 0.1
    for snr in sweep_snrs(ctx, "trap/imprint weights", claim):
        z = _z_for_snr(snr, dim, clip, mean_norm)
        enc = _ddp_encoder(ctx, _level_salt(701, snr, claim), z=z, clip=clip, n=n, dim=dim)
        noised = _ddp_round(enc, updates)
        cands, _ = ml.imprint_reconstruct(
            trap, torch.from_numpy(noised), data.image_shape, max_candidates=n * batch
        )
        match = match_reconstructions(cands, xs)
        rows += gradient_rows(
            family=Family.MODEL_LEVEL,
            attack="trap/imprint weights",
            defense=f"secure aggregation + distributed DP (per-client SNR {snr:g})",
            setting=setting + f"; per-client SNR {snr:g}",
            note=f"z={z:.3g}",
            psnrs=list(match.psnr_db),
            base=base,
            expected=False if snr == claim else None,
            protection=Protection.SECURE_AGGREGATION_DP,
            multi=True,
            privacy=gaussian_privacy(z),  # one round: each client's update is released once
        )
        if snr == claim:
            panels.append(
                matched_panel("trap_ddp", "trap weights against distributed DP", xs, cands, match)
            )
    return CellOutput(tuple(rows), tuple(panels))


def cell_disaggregation(ctx: EvaluationContext) -> CellOutput:
    """Aggregates of overlapping cohorts over rounds, disaggregated by least squares."""
    cfg = ctx.config
    data = ctx.dataset(DatasetName.DIGITS)
    rng = ctx.rng(800)
    n, per_round, rounds, hidden = cfg.cohort, cfg.cohort - 2, 2 * cfg.cohort, 32
    model = make_mlp(
        data.input_size, hidden, data.num_classes, activation=Activation.RELU, seed=cfg.seed
    )
    parts = split_indices(len(data), n, 1, rng=rng)
    batches = {i + 1: (data.images[p], data.labels[p]) for i, p in enumerate(parts)}
    ids = sorted(batches)
    xs = torch.cat([batches[c][0] for c in ids])
    base = baselines(xs, data.images, seed=cfg.seed)
    updates = ml.client_updates({c: model for c in ids}, batches)
    participation = ml.participation_matrix(rounds, n, per_round, rng=rng)
    setting = (
        f"{describe(model, data, Activation.RELU, hidden)}; {n} clients, {rounds} rounds of "
        f"{per_round} (= minimum aggregate size), model frozen by the server"
    )
    dim = updates[ids[0]].size
    clip = max(float(np.linalg.norm(u)) for u in updates.values())
    mean_norm = float(np.mean([np.linalg.norm(u) for u in updates.values()]))
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    claim = 0.1
    # no noise, then distributed DP at each level of the sweep (the claim: SNR 0.1)
    cases: list[tuple[str, Protection, float | None]] = [
        (
            f"secure aggregation per round ({ctx.aggregator_name})",
            Protection.SECURE_AGGREGATION,
            None,
        )
    ]
    cases += [
        (
            f"secure aggregation + distributed DP per round (SNR {snr:g})",
            Protection.SECURE_AGGREGATION_DP,
            snr,
        )
        for snr in sweep_snrs(ctx, "disaggregation across rounds", claim)
    ]
    prior = (data.mean_image()[0], data.images.var(dim=0))
    # each client's least-squares estimate carries the rounds' noise, scaled by (P^T P)^-1
    spread = np.sqrt(np.diag(np.linalg.pinv(participation.T @ participation)))
    # a client's update is released (noised) in every round it takes part in: the
    # worst-off client's epsilon composes over its rounds
    releases = int(participation.sum(axis=0).max())
    for defense, protection, snr in cases:
        z = 0.0 if snr is None else _z_for_snr(snr, dim, clip, mean_norm)
        sums = []
        round_std = 0.0
        for r in range(rounds):
            cohort = {c: updates[c] for j, c in enumerate(ids) if participation[r, j]}
            if snr is not None:
                salt = _level_salt(810 + r, snr, claim)
                enc = _ddp_encoder(ctx, salt, z=z, clip=clip, n=per_round, dim=dim)
                round_std = enc.parameters.aggregate_error_stddev(len(cohort))
                sums.append(_ddp_round(enc, cohort))
            else:
                sums.append(ctx.aggregator(cohort))
        estimate = ml.disaggregate(np.stack(sums), participation)
        recs = []
        for j in range(n):
            plain = gi.first_layer_reconstruction(model, estimate[j], data.image_shape)
            best = plain.clamp(0, 1)
            if snr is not None:  # the prior-aware attacker: Wiener shrinkage to the data's prior
                wiener = gi.first_layer_reconstruction(
                    model,
                    estimate[j],
                    data.image_shape,
                    noise_std=round_std * float(spread[j]),
                    prior=prior,
                ).clamp(0, 1)
                if image_psnr(wiener, xs[j : j + 1]) > image_psnr(best, xs[j : j + 1]):
                    best = wiener
            recs.append(best)
        rec = torch.cat(recs)
        psnrs = [image_psnr(rec[j : j + 1], xs[j : j + 1]) for j in range(n)]
        rows += gradient_rows(
            family=Family.MODEL_LEVEL,
            attack="disaggregation across rounds",
            defense=defense,
            setting=setting,
            psnrs=psnrs,
            base=base,
            expected=True if snr is None else (False if snr == claim else None),
            protection=protection,
            positive_control=snr is None,
            multi=True,
            note="least squares on A = P U with known participation P"
            + (
                f"; z={z:.3g}; best of the closed form and its Wiener (MMSE) shrinkage to the "
                f"data set's prior; the worst-off client takes part in {releases} of {rounds} "
                "rounds"
                if snr is not None
                else ""
            ),
            privacy=gaussian_privacy(z, releases) if snr is not None else None,
        )
        if snr is None or snr == claim:
            k = int(snr is not None)
            panels.append(
                panel(f"disaggregation_{k}", f"disaggregation: {defense}", xs, rec, psnrs)
            )
    return CellOutput(tuple(rows), tuple(panels))
