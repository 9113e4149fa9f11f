"""Protocol-level cell: scripted malicious servers against the real client state machines.

Every :class:`~threat_models.attacks.protocol_level.ProtocolAttack` runs twice: against
the deliberately unhardened baseline (the positive control: the server isolates the
victim's update within two quantisation steps) and against the hardened clients (they
refuse with a typed error and reveal nothing). The victim's update is its gradient on
one digit, so the report can show what the server would have seen.
"""

from __future__ import annotations

from secagg.errors import raise_missing_extra
from threat_models.attacks import gradient_inversion as gi
from threat_models.attacks import model_level as ml
from threat_models.attacks import protocol_level as pl
from threat_models.data import Activation, DatasetName, make_mlp, split_indices
from threat_models.evaluation.context import EvaluationContext
from threat_models.evaluation.rows import CellOutput, Family, ImagePanel, Protection, Row
from threat_models.evaluation.scoring import image_psnr, panel

try:
    import torch
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.evaluation")

__all__ = ["cell_protocol_attacks"]

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
                    expected=configuration is pl.Configuration.UNHARDENED,
                    positive_control=outcome.positive_control,
                    note=outcome.note,
                    protection=_PROTECTION[configuration],
                )
            )
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
    return CellOutput(tuple(rows), tuple(panels))
