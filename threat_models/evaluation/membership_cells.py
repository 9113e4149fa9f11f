"""Membership-inference cell: the released model, without and with DP-SGD.

Loss-threshold, LiRA online and LiRA offline attacks
(:mod:`threat_models.attacks.membership`, float64 scores) on a model trained on half of a
population. Secure aggregation releases the same model as plaintext training, so all
three must succeed there; sample-level DP (DP-SGD) must stop them where its
(epsilon, delta) alone keeps every membership test below the success criterion
(:func:`dp_expectation`: epsilon below about ln 3); at a larger epsilon a row makes no claim,
states what was measured and, in its note, the TPR its (epsilon, delta) allows.

Membership is also inferred from what secure aggregation reveals in federated training:
the aggregates of every round (:mod:`threat_models.attacks.aggregate_membership`, a
user-level likelihood-ratio test by an attacker who knows the target client's data and
the global models). Without noise it must succeed (the positive control: secure
aggregation alone does not hide who took part); under user-level distributed DP each row
states the epsilon of the rounds observed
(:func:`~threat_models.evaluation.scoring.gaussian_privacy`) and claims a stop where that
epsilon alone forces it (:func:`dp_expectation`), and a ``dp_bound_respected`` row checks
the measured ROC against ``TPR <= e^eps FPR + delta`` (:func:`dp_bound_check`, with an
under-noised positive control).

Each attack has three rows: AUC (the primary row), TPR at 1% FPR and TPR at 0.1% FPR; the
attack succeeds when AUC >= 0.6 or TPR at 1% FPR >= 3%, each criterion the ``threshold``
of its row (:func:`membership_rows`). Every row states the test accuracy of the attacked
model. A rate rests on ``floor(rate * non-members)`` false positives; where the population has
fewer non-members than the rate needs (1,000 at 0.1%: see
:func:`threat_models.attacks.metrics.negatives_needed`), the row's note says so: the value
is then the TPR at zero false positives. LiRA uses :data:`LIRA_FULL_SHADOWS` shadow
models in full mode (per-example variances) and the configuration's few in quick mode
(pooled variances).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import beta

from secagg.errors import InvalidParameterError
from threat_models.attacks import aggregate_membership as agg
from threat_models.attacks import membership as mia
from threat_models.attacks.metrics import RocCurve, negatives_needed
from threat_models.data import DatasetName
from threat_models.evaluation.context import EvaluationContext
from threat_models.evaluation.rows import (
    CellOutput,
    Family,
    Figure,
    PrivacyLevel,
    Protection,
    Row,
    Series,
)
from threat_models.evaluation.scoring import RowPrivacy, gaussian_privacy

__all__ = [
    "SUCCESS_AUC",
    "SUCCESS_TPR",
    "LIRA_FULL_SHADOWS",
    "LOW_FPRS",
    "dp_expectation",
    "dp_tpr_bound",
    "BOUND_CONFIDENCE",
    "dp_auc_bound",
    "DpBoundCheck",
    "dp_bound_check",
    "AggregateSizes",
    "aggregate_sizes",
    "aggregate_membership_rows",
    "cell_membership",
    "membership_rows",
]

#: Success criteria: AUC, or the true-positive rate at 1% false positives (3x chance).
SUCCESS_AUC = 0.6
SUCCESS_TPR = 0.03

#: LiRA's shadow models in full mode (Carlini et al. 2022 use 64 and more; from 64 on
#: each example's Gaussians get their own variance).
LIRA_FULL_SHADOWS = 64

#: The low false-positive rates reported for every attack, with their metric names.
LOW_FPRS: tuple[tuple[float, str], ...] = ((0.01, "tpr_at_1pct_fpr"), (0.001, "tpr_at_0.1pct_fpr"))


@dataclass(frozen=True)
class _Run:
    """One trained model the attacks meet, and what the harness claims about it."""

    defense: str
    result: mia.MembershipResult
    expected: bool | None
    protection: Protection
    positive_control: bool = False
    note: str = ""
    noise_multiplier: float | None = None


def dp_expectation(epsilon: float, delta: float) -> bool | None:
    """The claim of a DP-SGD row: ``False`` (the attack must be stopped) where (epsilon,
    delta)-DP alone bounds the TPR at 1% FPR below :data:`SUCCESS_TPR`
    (:func:`dp_tpr_bound`, i.e. epsilon below about ln 3), ``None`` (no claim) above.

    Above that epsilon DP promises nothing the success criterion can check, and the
    attacks are measured to pass it: LiRA offline reaches 3-4% TPR at 1% FPR at epsilon 4
    (z = 2 here, 8 shadows) in two runs of six, LiRA with 64 shadows reaches AUC 0.62-0.63
    at epsilon 11 (z = 1).
    """
    return False if dp_tpr_bound(epsilon, delta, 0.01) < SUCCESS_TPR else None


def dp_tpr_bound(epsilon: float, delta: float, fpr: float) -> float:
    """The largest TPR at ``fpr`` that (epsilon, delta)-DP allows any membership test:
    ``min(1, e^epsilon * fpr + delta)`` (Kairouz et al. 2015, hypothesis-testing view)."""
    if epsilon < 0 or not 0 <= delta < 1 or not 0 <= fpr <= 1:
        raise InvalidParameterError("need epsilon >= 0, delta in [0, 1), fpr in [0, 1]")
    return min(1.0, math.exp(min(epsilon, 700.0)) * fpr + delta)


def dp_auc_bound(epsilon: float, delta: float) -> float:
    """The largest AUC that (epsilon, delta)-DP allows any membership test: the area under
    the tightest trade-off curve ``TPR <= min(e^eps FPR + delta, 1 - e^-eps (1 - delta -
    FPR), 1)`` (Kairouz et al. 2015), in closed form. The two lines meet at
    ``FPR = (1 - delta) / (1 + e^eps)``; with ``delta = 0`` the area is
    ``e^eps / (1 + e^eps)``."""
    if epsilon < 0 or not 0 <= delta < 1:
        raise InvalidParameterError("need epsilon >= 0 and delta in [0, 1)")
    e = math.exp(min(epsilon, 700.0))
    meet = (1.0 - delta) / (1.0 + e)
    rest = 1.0 - delta - meet  # from the meeting point to where the curve reaches 1
    below = e * meet * meet / 2.0 + delta * meet
    above = rest - rest * rest / (2.0 * e)
    return below + above + delta


#: Confidence of the DP-bound check: every measured TPR and FPR it compares is replaced by
#: its Clopper-Pearson bound at this level (Bonferroni over the rates of :data:`LOW_FPRS`
#: and the two sides), so sampling noise alone flags a correct accounting at most 5% of
#: the time.
BOUND_CONFIDENCE = 0.95


@dataclass(frozen=True)
class DpBoundCheck:
    """Whether an ROC respects what (epsilon, delta)-DP allows at the rates of
    :data:`LOW_FPRS`.

    Attributes:
        epsilon, delta: the claimed privacy.
        tpr_low: per rate, the Clopper-Pearson lower bound of the TPR at that rate.
        allowed: per rate, :func:`dp_tpr_bound` at the Clopper-Pearson upper bound of the
            operating point's FPR.
    """

    epsilon: float
    delta: float
    tpr_low: tuple[float, ...]
    allowed: tuple[float, ...]

    @property
    def respected(self) -> bool:
        """No rate where even the TPR's lower bound exceeds what DP allows."""
        return all(low <= bound for low, bound in zip(self.tpr_low, self.allowed, strict=True))

    def describe(self) -> str:
        """The comparison in words, per rate."""
        parts = [
            f"TPR >= {low:.3g} (95% CP) vs DP's {bound:.3g} at {fpr:.1%} FPR"
            for (fpr, _), low, bound in zip(LOW_FPRS, self.tpr_low, self.allowed, strict=True)
        ]
        return f"eps={self.epsilon:.3g}, delta={self.delta:g}: " + "; ".join(parts)


def dp_bound_check(roc: RocCurve, epsilon: float, delta: float) -> DpBoundCheck:
    """Check the measured ROC against ``TPR <= e^epsilon FPR + delta`` at each of
    :data:`LOW_FPRS`.

    At each rate the operating point is the one :meth:`RocCurve.tpr_at_fpr` reads (the
    largest TPR at FPR <= rate); its true-positive count gives a lower confidence bound on
    the TPR and its false-positive count an upper bound on the FPR (Clopper-Pearson, at
    :data:`BOUND_CONFIDENCE` overall). A violation -- the lower bound above what DP allows
    at the upper bound -- means the noise added is weaker than the epsilon claims.

    Raises:
        InvalidParameterError: an ROC without its member and non-member counts.
    """
    if roc.positives < 1 or roc.negatives < 1:
        raise InvalidParameterError("the ROC must record its members and non-members")
    alpha = (1.0 - BOUND_CONFIDENCE) / (2 * len(LOW_FPRS))
    lows: list[float] = []
    allowed: list[float] = []
    for fpr, _ in LOW_FPRS:
        ok = np.flatnonzero(roc.fpr <= fpr + 1e-12)
        best = int(ok[np.argmax(roc.tpr[ok])])
        tp = round(float(roc.tpr[best]) * roc.positives)
        fp = round(float(roc.fpr[best]) * roc.negatives)
        low = float(beta.ppf(alpha, tp, roc.positives - tp + 1)) if tp > 0 else 0.0
        high = float(beta.ppf(1 - alpha, fp + 1, roc.negatives - fp)) if fp < roc.negatives else 1.0
        lows.append(low)
        allowed.append(dp_tpr_bound(epsilon, delta, high))
    return DpBoundCheck(epsilon, delta, tuple(lows), tuple(allowed))


def _fpr_note(roc: RocCurve, fpr: float) -> str:
    """Which non-members a TPR at ``fpr`` rests on, and when they are too few."""
    allowed = roc.false_positives_allowed(fpr)
    text = (
        f"{roc.negatives} non-members, {allowed} false positive{'s' if allowed != 1 else ''} "
        f"allowed"
    )
    if not roc.resolves_fpr(fpr):
        text += (
            f"; fewer than the {negatives_needed(fpr):,} a {fpr:.1%} FPR needs: "
            "this is the TPR at zero false positives"
        )
    return text


def membership_rows(
    *,
    attack: str,
    roc: RocCurve,
    defense: str,
    setting: str,
    expected: bool | None,
    protection: Protection,
    positive_control: bool = False,
    note: str = "",
    epsilon: float | None = None,
    delta: float | None = None,
    noise_multiplier: float | None = None,
    accuracy: float | None = None,
    privacy: RowPrivacy | None = None,
) -> list[Row]:
    """The rows of one attack on one model: AUC (the primary row) and the TPR at each of
    :data:`LOW_FPRS`.

    The attack succeeds when ``AUC >= SUCCESS_AUC or TPR at 1% FPR >= SUCCESS_TPR``; each
    of the two criteria is the verdict of its own row, with its ``threshold``: the AUC row
    succeeds iff ``AUC >= SUCCESS_AUC``, the 1% row iff ``TPR >= SUCCESS_TPR``. A defended
    claim (``expected`` False) is on the 1% row, where (epsilon, delta)-DP caps the TPR, and
    on the AUC row only where DP also caps the AUC below the criterion
    (:func:`dp_auc_bound`; epsilon below about ln 1.5); a leak at low FPR alone is a
    regression of the 1% row. An expected success (``expected`` True, positive controls)
    is claimed on the AUC row only (the 1% row makes no claim). The 0.1% row has no
    threshold: its verdict is the attack's (either criterion) and it makes no claim.

    Each TPR row's note states the non-members it rests on. ``epsilon`` (at ``delta``) is
    the DP-SGD epsilon of the model, sample-level, ``noise_multiplier`` its ``z``; None
    without DP. ``privacy`` (e.g. user-level,
    :func:`~threat_models.evaluation.scoring.gaussian_privacy`) replaces them on every row.
    ``accuracy`` is the attacked model's test accuracy.
    """
    tpr_1pct = roc.tpr_at_fpr(0.01)
    attack_succeeded = roc.auc >= SUCCESS_AUC or tpr_1pct >= SUCCESS_TPR
    stated = privacy.epsilon if privacy is not None else epsilon
    stated_delta = privacy.delta if privacy is not None else delta
    # a defended claim on the AUC row only where DP alone caps the AUC below the criterion
    auc_claim = expected
    if expected is False and (
        stated is None or dp_auc_bound(stated, stated_delta or 0.0) >= SUCCESS_AUC
    ):
        auc_claim = None
    auc = Row(
        family=Family.MEMBERSHIP,
        attack=attack,
        defense=defense,
        setting=setting,
        metric="auc",
        value=roc.auc,
        baseline=0.5,
        baseline_name="chance",
        succeeded=roc.auc >= SUCCESS_AUC,
        expected=auc_claim,
        positive_control=positive_control,
        note=note,
        protection=protection,
        epsilon=epsilon,
        delta=delta if epsilon is not None else None,
        epsilon_level=PrivacyLevel.SAMPLE if epsilon is not None else None,
        noise_multiplier=noise_multiplier,
        accuracy=accuracy,
        threshold=SUCCESS_AUC,
    )
    low_fpr = replace(
        auc,
        primary=False,
        positive_control=False,
        expected=False if expected is False else None,
    )
    rows = [
        auc,
        replace(
            low_fpr,
            metric=LOW_FPRS[0][1],
            value=tpr_1pct,
            baseline=LOW_FPRS[0][0],
            succeeded=tpr_1pct >= SUCCESS_TPR,
            threshold=SUCCESS_TPR,
            note=_fpr_note(roc, LOW_FPRS[0][0]),
        ),
    ]
    for fpr, metric in LOW_FPRS[1:]:
        rows.append(
            replace(
                low_fpr,
                metric=metric,
                value=roc.tpr_at_fpr(fpr),
                baseline=fpr,
                succeeded=attack_succeeded,
                expected=None,
                threshold=None,
                note=_fpr_note(roc, fpr) + "; verdict: the attack's (AUC or TPR at 1% FPR)",
            )
        )
    return rows if privacy is None else [privacy.apply(r) for r in rows]


@dataclass(frozen=True)
class AggregateSizes:
    """The size of the membership attack on the aggregates in one mode.

    Attributes:
        trials: paired trials: as many member as non-member scores.
        rounds: aggregates the server observes (the DP releases of the target).
        noise_multipliers: the ``z`` of the distributed DP runs (besides the run without
            noise, the positive control).
    """

    trials: int
    rounds: int
    noise_multipliers: tuple[float, ...]


def aggregate_sizes(quick: bool) -> AggregateSizes:
    """Quick mode: 300 non-members (1% FPR resolved, 0.1% not), 20 rounds (as full: fewer
    leave the model short of training), z = 2 (no claim) and 16 (epsilon 1.05: a claim).
    Full mode: 1,000 non-members (both rates resolved), 20 rounds, z from 1 (epsilon 28)
    to 32 (epsilon 0.49)."""
    if quick:
        return AggregateSizes(trials=300, rounds=20, noise_multipliers=(2.0, 16.0))
    return AggregateSizes(
        trials=1000, rounds=20, noise_multipliers=(1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    )


def aggregate_membership_rows(
    results: Sequence[agg.AggregateMembershipResult], setting: str
) -> tuple[list[Row], list[Series]]:
    """The rows of the membership attack on the aggregates, one run per noise multiplier
    (``0``: secure aggregation without noise, the positive control).

    Per run: the AUC and TPR rows of :func:`membership_rows` (user-level epsilon over the
    observed rounds from :func:`gaussian_privacy`, a claim where :func:`dp_expectation`
    makes one, the final global model's accuracy) and, under noise, a
    ``dp_bound_respected`` row (:func:`dp_bound_check`; expected to hold: a violation
    means the accounting is wrong). One more bound row is the check's positive control:
    the scores without noise checked against the epsilon of the largest ``z``, which the
    check must flag.
    """
    rows: list[Row] = []
    series: list[Series] = []
    attack = "LRT on the aggregates (user)"
    plain = next((r for r in results if r.noise_multiplier == 0), None)
    for res in results:
        trials = f"{res.trials} member and {res.trials} non-member trials (paired data)"
        if res.noise_multiplier == 0:
            privacy = None
            defense = "secure aggregation, no noise (aggregates only)"
            expected: bool | None = True
            protection = Protection.SECURE_AGGREGATION
            note = f"{trials}; the server sees only the sum of the clipped updates"
        else:
            privacy = gaussian_privacy(res.noise_multiplier, res.rounds)
            defense = (
                f"distributed DP z={res.noise_multiplier:g} "
                f"(user eps={privacy.epsilon:.2f}, delta={privacy.delta:g})"
            )
            expected = dp_expectation(privacy.epsilon, privacy.delta)
            protection = Protection.SECURE_AGGREGATION_DP
            bound = dp_tpr_bound(privacy.epsilon, privacy.delta, 0.01)
            note = f"{trials}; (eps, delta)-DP allows TPR <= {bound:.2g} at 1% FPR" + (
                "" if expected is not None else "; no claim at this epsilon"
            )
        out = membership_rows(
            attack=attack,
            roc=res.roc,
            defense=defense,
            setting=setting,
            expected=expected,
            protection=protection,
            positive_control=res.noise_multiplier == 0,
            note=note,
            accuracy=res.test_accuracy,
            privacy=privacy,
        )
        rows += out
        if privacy is not None:
            check = dp_bound_check(res.roc, privacy.epsilon, privacy.delta)
            rows.append(_bound_row(out[0], check, control=False))
        label = f"aggregates, {defense.split(' (')[0]} (AUC {res.roc.auc:.2f})"
        fpr = tuple(np.maximum(res.roc.fpr, 1e-4).tolist())
        series.append(Series(label, fpr, tuple(np.maximum(res.roc.tpr, 1e-4).tolist())))
    noisy = [r for r in results if r.noise_multiplier > 0]
    if plain is not None and noisy:
        claimed = max(noisy, key=lambda r: r.noise_multiplier)
        privacy = gaussian_privacy(claimed.noise_multiplier, plain.rounds)
        check = dp_bound_check(plain.roc, privacy.epsilon, privacy.delta)
        control = replace(
            rows[0],
            defense=(
                f"no noise, claimed as z={claimed.noise_multiplier:g} "
                f"(user eps={privacy.epsilon:.2f})"
            ),
        )
        rows.append(privacy.apply(_bound_row(control, check, control=True)))
    return rows, series


def _bound_row(auc: Row, check: DpBoundCheck, *, control: bool) -> Row:
    """The ``dp_bound_respected`` row of one run: 1 when the ROC respects the DP bound.

    Its verdict ``succeeded`` is the attack beating the bound (expected never, and
    expected for the under-noised control)."""
    return replace(
        auc,
        attack=f"{auc.attack}: DP bound check" + (" (under-noised control)" if control else ""),
        metric="dp_bound_respected",
        value=1.0 if check.respected else 0.0,
        baseline=None,
        baseline_name="",
        succeeded=not check.respected,
        expected=control,
        positive_control=control,
        primary=False,
        threshold=None,
        note=check.describe()
        + (
            "; the noise added is below the claim: the check must flag it"
            if control
            else "; a violation would mean the accounting overstates the noise"
        ),
    )


def cell_membership(ctx: EvaluationContext) -> CellOutput:
    """Loss-threshold and LiRA (online, offline) membership inference, without and with
    DP-SGD."""
    cfg = ctx.config
    data = ctx.dataset(DatasetName.MNIST)
    rng = ctx.rng(400)
    population = data.subset(rng.permutation(len(data))[: cfg.mia_population])
    shadows = cfg.mia_shadows if cfg.quick else max(cfg.mia_shadows, LIRA_FULL_SHADOWS)
    plain_cfg = mia.TrainingConfig(hidden=64, epochs=100, learning_rate=0.01)
    dp_cfg = mia.TrainingConfig(hidden=64, epochs=10, batch_size=125, learning_rate=0.01)
    plain = mia.run_membership_experiment(population, plain_cfg, num_shadows=shadows, seed=cfg.seed)
    runs = [
        _Run("none (plaintext training)", plain, True, Protection.NONE, positive_control=True),
        _Run(
            "secure aggregation (same released model)",
            plain,
            True,
            Protection.SECURE_AGGREGATION,
        ),
    ]
    for z in cfg.mia_noise_multipliers:
        dp = mia.DpSgdConfig(noise_multiplier=z, max_grad_norm=1.0)
        res = mia.run_membership_experiment(
            population, dp_cfg, num_shadows=shadows, dp=dp, seed=cfg.seed
        )
        eps = res.epsilon if res.epsilon is not None else math.inf
        delta = dp.delta
        defense = f"DP-SGD z={z:g} (eps={eps:.2f}, delta={delta:g})"
        claim = dp_expectation(eps, delta)
        note = f"(eps, delta)-DP allows TPR <= {dp_tpr_bound(eps, delta, 0.01):.2g} at 1% FPR" + (
            "" if claim is not None else "; no claim at this epsilon"
        )
        runs.append(_Run(defense, res, claim, Protection.DP, note=note, noise_multiplier=z))
    rows: list[Row] = []
    series: list[Series] = []
    for run in runs:
        res = run.result
        setting = (
            f"mnist population {len(population)} (half members), MLP {data.input_size}-64-10 "
            f"relu; {res.num_shadows} shadow models ({res.lira_variance.value} variance); "
            "float64 scores"
        )
        fit = f"train/test acc {res.train_accuracy:.2f}/{res.test_accuracy:.2f}"
        same_model = run.protection is Protection.SECURE_AGGREGATION
        # (attack, ROC, whether it may be a control): the loss threshold is the weakest
        # attack, reported for reference: its AUC sits at the criterion (0.61-0.63 over
        # seeds), so it is no control and no claim that it must succeed; a DP claim that it
        # is stopped still holds
        attacks = (
            ("loss threshold", res.loss_roc, False),
            ("LiRA online", res.lira_roc, True),
            ("LiRA offline", res.lira_offline_roc, True),
        )
        for attack, roc, control in attacks:
            weak = not control and run.expected is True
            rows += membership_rows(
                attack=attack,
                roc=roc,
                defense=run.defense,
                setting=setting,
                expected=None if weak else run.expected,
                protection=run.protection,
                positive_control=run.positive_control and not weak,
                epsilon=res.epsilon,
                delta=res.delta,
                noise_multiplier=run.noise_multiplier,
                accuracy=res.test_accuracy,
                note="; ".join(
                    part
                    for part in (
                        "the released model is identical with or without secure aggregation"
                        if same_model
                        else run.note,
                        fit,
                    )
                    if part
                ),
            )
            if not same_model:  # the same curve as plaintext training
                label = f"{attack}, {run.defense.split(' (')[0]} (AUC {roc.auc:.2f})"
                fpr = tuple(np.maximum(roc.fpr, 1e-4).tolist())
                series.append(Series(label, fpr, tuple(np.maximum(roc.tpr, 1e-4).tolist())))
    sizes = aggregate_sizes(cfg.quick)
    federated = agg.FederatedConfig(clients=cfg.cohort, rounds=sizes.rounds)
    digits = ctx.dataset(DatasetName.DIGITS)
    results = [
        agg.run_aggregate_membership(
            digits, federated, noise_multiplier=z, trials=sizes.trials, seed=cfg.seed
        )
        for z in (0.0, *sizes.noise_multipliers)
    ]
    agg_setting = (
        f"digits, FedAvg ({federated.local_steps} local steps at lr {federated.local_lr:g}, "
        f"server lr {federated.server_lr:g}), {federated.clients} clients x "
        f"{federated.examples_per_client} examples + the target, MLP {digits.input_size}-"
        f"{federated.hidden}-{digits.num_classes} sigmoid, C={federated.clip_norm:g}, "
        f"{federated.rounds} rounds observed; {federated.reference_clients} reference clients"
    )
    agg_rows, agg_series = aggregate_membership_rows(results, agg_setting)
    rows += agg_rows
    figure = Figure(
        name="roc_membership",
        title="Membership inference ROC (log-log)",
        xlabel="false-positive rate",
        ylabel="true-positive rate",
        series=tuple(series),
        logx=True,
        logy=True,
        diagonal=True,
    )
    aggregates = replace(
        figure,
        name="roc_membership_aggregates",
        title="User-level membership inference from the aggregates, ROC (log-log)",
        series=tuple(agg_series),
    )
    return CellOutput(tuple(rows), (), (figure, aggregates))
