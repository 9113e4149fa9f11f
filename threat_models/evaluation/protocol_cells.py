"""Protocol-level cell: scripted malicious servers against the real client state machines.

Every :class:`~threat_models.attacks.protocol_level.ProtocolAttack` runs twice: against
the deliberately unhardened baseline (the positive control: the server isolates the
victim's update within two quantisation steps) and against the hardened clients (they
refuse with a typed error and reveal nothing). The victim's update is its gradient on
one digit, so the report can show what the server would have seen.

The same attacks then run on the SecAgg+ sparse graph (Harary, ``k`` and ``t`` from the
default threat model) and on a complete graph where one client drops out after sharing its
keys. The attack classes of the independent review follow, each against the weakened
configuration of its adversarial test (the positive control) and the defaults: partner
keys against per-client views, survivor padding with ids that sent nothing, a
server-chosen graph of components, colluders around the victim (the threat model's
``C``, then more than it: no configuration claims to stop ``t`` colluding shareholders,
so that row is expected to succeed), round-id reuse to gather consistency quorums
(:mod:`threat_models.attacks.quorum_attacks`) and the Paillier split into two decryption
quorums; full mode adds larger cohorts.
"""

from __future__ import annotations

from secagg.errors import raise_missing_extra
from threat_models.attacks import gradient_inversion as gi
from threat_models.attacks import lying_server as ls
from threat_models.attacks import model_level as ml
from threat_models.attacks import protocol_level as pl
from threat_models.attacks import quorum_attacks as qa
from threat_models.data import Activation, DatasetName, ImageData, make_mlp, split_indices
from threat_models.evaluation.context import EvaluationContext
from threat_models.evaluation.rows import CellOutput, Family, ImagePanel, Protection, Row
from threat_models.evaluation.scoring import image_psnr, panel
from threat_models.parameters import GraphKind

try:
    import torch
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.evaluation")

__all__ = ["cell_protocol_attacks"]

#: coordinates of each update in the Paillier quorum split
_PAILLIER_DIM = 64
_PROTECTION = {
    pl.Configuration.UNHARDENED: Protection.UNHARDENED,
    pl.Configuration.HARDENED: Protection.SECURE_AGGREGATION,
}


def cell_protocol_attacks(ctx: EvaluationContext) -> CellOutput:
    """Scripted malicious servers against the real clients: hardened vs unhardened baseline."""
    cfg = ctx.config
    data = ctx.dataset(DatasetName.DIGITS)
    rng = ctx.rng(900)
    n, hidden = cfg.cohort, 32
    model = make_mlp(
        data.input_size, hidden, data.num_classes, activation=Activation.RELU, seed=cfg.seed
    )
    parts = split_indices(len(data), n, 1, rng=rng)
    batches = {i + 1: (data.images[p], data.labels[p]) for i, p in enumerate(parts)}
    updates = ml.client_updates({c: model for c in batches}, batches)
    victim = 3
    x = batches[victim][0]
    setting = (
        f"{n} clients, SecAgg (complete graph), malicious-server threat model; victim's update "
        f"= its gradient on one digit (d={updates[victim].size})"
    )
    rows: list[Row] = []
    panels: list[ImagePanel] = []
    for attack in pl.ProtocolAttack:
        recs: list[torch.Tensor] = []
        scores: list[float] = []
        for configuration in (pl.Configuration.UNHARDENED, pl.Configuration.HARDENED):
            if attack is pl.ProtocolAttack.PAILLIER_SINGLE_DECRYPTION:
                outcome = pl.run_paillier_attack(
                    configuration,
                    updates,
                    victim=victim,
                    key_bits=512 if cfg.quick else 2048,
                    seed=cfg.seed,
                )
                where = f"{n} clients are the decryptors, threshold Paillier"
            else:
                outcome = pl.run_protocol_attack(
                    attack, configuration, updates, victim=victim, seed=cfg.seed
                )
                where = setting
            rows.append(_attack_row(attack, configuration, outcome, where))
            if outcome.recovered is not None:
                rec = gi.first_layer_reconstruction(model, outcome.recovered, data.image_shape)
            else:
                rec = torch.zeros_like(x)
            recs.append(rec.clamp(0, 1))
            scores.append(image_psnr(rec, x))
        panels.append(
            panel(
                f"protocol_{attack.name.lower()}",
                f"{attack.value}: baseline (left) vs hardened (right)",
                torch.cat([x, x]),
                torch.cat(recs),
                scores,
            )
        )
    rows += _variant_rows(ctx, data, model)
    rows += _review_rows(ctx, data, model)
    return CellOutput(tuple(rows), tuple(panels))


def _attack_row(
    attack: pl.ProtocolAttack,
    configuration: pl.Configuration,
    outcome: pl.AttackOutcome,
    setting: str,
    *,
    primary: bool = True,
) -> Row:
    """The row of one scripted protocol attack: must succeed against the baseline only."""
    return Row(
        family=Family.PROTOCOL_LEVEL,
        attack=attack.value,
        defense=outcome.defense,
        setting=setting,
        metric="victim_update_max_error",
        value=outcome.error,
        baseline=outcome.tolerance,
        baseline_name="two quantisation steps",
        succeeded=outcome.succeeded,
        expected=configuration is pl.Configuration.UNHARDENED,
        positive_control=outcome.positive_control,
        primary=primary,
        note=outcome.note,
        protection=_PROTECTION[configuration],
    )


def _cohort_updates(
    ctx: EvaluationContext, data: ImageData, model: torch.nn.Module, n: int, stream: int
) -> dict[int, ml.F64]:
    """Each of ``n`` clients' gradient on one digit."""
    parts = split_indices(len(data), n, 1, rng=ctx.rng(stream))
    batches = {i + 1: (data.images[p], data.labels[p]) for i, p in enumerate(parts)}
    return ml.client_updates({c: model for c in batches}, batches)


def _variant_rows(ctx: EvaluationContext, data: ImageData, model: torch.nn.Module) -> list[Row]:
    """The masking attacks on the SecAgg+ sparse graph and with a dropout."""
    cfg = ctx.config
    sizes = (12,) if cfg.quick else (12, 16, 40)
    rows: list[Row] = []
    for n in sizes:
        updates = _cohort_updates(ctx, data, model, n, 901 + n)
        variants = (
            (GraphKind.HARARY, (), f"{n} clients, SecAgg+ (Harary graph)"),
            (GraphKind.COMPLETE, (n,), f"{n} clients, SecAgg, client {n} drops out"),
            (GraphKind.HARARY, (n,), f"{n} clients, SecAgg+ (Harary graph), client {n} drops out"),
        )
        for graph, dropouts, where in variants:
            for attack in pl.ProtocolAttack:
                if attack is pl.ProtocolAttack.PAILLIER_SINGLE_DECRYPTION:
                    continue
                for configuration in (pl.Configuration.UNHARDENED, pl.Configuration.HARDENED):
                    outcome = pl.run_protocol_attack(
                        attack,
                        configuration,
                        updates,
                        victim=3,
                        seed=cfg.seed,
                        graph=graph,
                        dropouts=dropouts,
                    )
                    rows.append(
                        _attack_row(
                            attack,
                            configuration,
                            outcome,
                            f"{where}, malicious-server threat model",
                            primary=False,
                        )
                    )
    return rows


def _scenario_row(
    attack: str, where: str, outcome: ls.ScenarioOutcome, *, weakened: bool, expected: bool
) -> Row:
    return Row(
        family=Family.PROTOCOL_LEVEL,
        attack=attack,
        defense=outcome.defense,
        setting=f"{where}; the server wants {outcome.target}",
        metric="victim_update_max_error" if outcome.summands == 1 else "small_sum_max_error",
        value=outcome.error,
        baseline=outcome.tolerance,
        baseline_name="two quantisation steps per summand",
        succeeded=outcome.succeeded,
        expected=expected,
        positive_control=weakened,
        primary=False,
        note=outcome.note,
        protection=Protection.UNHARDENED if weakened else Protection.SECURE_AGGREGATION,
    )


def _review_rows(ctx: EvaluationContext, data: ImageData, model: torch.nn.Module) -> list[Row]:
    """The attack classes of the independent review: weakened control and defaults."""
    cfg = ctx.config
    seed = cfg.seed
    rows: list[Row] = []
    for n in (16,) if cfg.quick else (16, 40):
        updates = _cohort_updates(ctx, data, model, n, 950 + n)
        for weakened in (True, False):
            for graph in (GraphKind.COMPLETE, GraphKind.HARARY):
                name = "SecAgg" if graph is GraphKind.COMPLETE else "SecAgg+"
                where = f"{n} clients, {name}, malicious-server threat model"
                out = ls.partner_keys_scenario(
                    updates, 3, weakened=weakened, graph=graph, seed=seed
                )
                rows.append(
                    _scenario_row(
                        "partner keys: survivor views that differ per client",
                        where,
                        out,
                        weakened=weakened,
                        expected=weakened,
                    )
                )
                out = ls.padded_survivors_scenario(
                    updates, weakened=weakened, graph=graph, seed=seed
                )
                rows.append(
                    _scenario_row(
                        "survivor list padded with ids that sent no input",
                        f"{n} clients, {name}, minimum aggregate above the real survivors",
                        out,
                        weakened=weakened,
                        expected=weakened,
                    )
                )
            out = ls.component_graph_scenario(updates, weakened=weakened, seed=seed)
            rows.append(
                _scenario_row(
                    "server-chosen graph of separate components",
                    f"{n} clients, SecAgg+",
                    out,
                    weakened=weakened,
                    expected=weakened,
                )
            )
        out = ls.colluders_scenario(updates, 3, weakened=False, beyond=True, seed=seed)
        rows.append(
            _scenario_row(
                "colluders beyond the threat model's fraction among the victim's neighbours",
                f"{n} clients, SecAgg+, default threat model (no claim beyond its C)",
                out,
                weakened=False,
                expected=True,
            )
        )
        for weakened in (True, False):
            out = qa.round_reuse_attack(updates, 3, weakened=weakened, seed=seed)
            rows.append(
                _scenario_row(
                    "round id reused to gather consistency quorums for partner keys",
                    f"{n} clients, SecAgg, malicious-server threat model",
                    out,
                    weakened=weakened,
                    expected=weakened,
                )
            )
    # the output layer's gradient (the last coordinates): the split does not depend on d
    tail = {c: u[-_PAILLIER_DIM:] for c, u in _cohort_updates(ctx, data, model, 30, 970).items()}
    for weakened in (True, False):
        out = qa.paillier_quorum_split(
            tail, 3, weakened=weakened, key_bits=512 if cfg.quick else 2048, seed=seed
        )
        rows.append(
            _scenario_row(
                "two decryption quorums, with and without the victim (Paillier)",
                "30 clients are the decryptors, threshold Paillier, colluding fraction 0.05, "
                f"the last {_PAILLIER_DIM} coordinates of each update",
                out,
                weakened=weakened,
                expected=weakened,
            )
        )
    n = 80  # the smallest cohort where C >= t at colluding fraction 0.4 (Harary)
    updates = _cohort_updates(ctx, data, model, n, 980)
    for weakened in (True, False):
        out = ls.colluders_scenario(updates, 3, weakened=weakened, seed=seed)
        rows.append(
            _scenario_row(
                "colluders (the threat model's C) made the victim's only neighbours",
                f"{n} clients, SecAgg+, colluding fraction 0.4",
                out,
                weakened=weakened,
                expected=weakened,
            )
        )
    return rows
