"""Empirical audit of Opacus DP-SGD: example-level canaries, one-run lower bound on epsilon.

The audit cell (:mod:`threat_models.evaluation.audit_cells`) audits the user-level
guarantee of the aggregation defences with canary *clients*; this module audits the
sample-level guarantee of DP-SGD with canary *examples*. A logistic regression on the
digits (scikit-learn's 8x8 images, 64 pixels) is trained with Opacus DP-SGD through the
library's client (:func:`dp.opacus_client.train_private_round`: a ``GradSampleModule``
and Opacus's ``DPOptimizer``, Poisson sampling with rate ``q = 1 / K`` for ``K`` steps per
epoch, i.e. an expected batch of ``N / K`` of the ``N`` training examples, per-example
clipping to ``C``, Gaussian
noise of std ``z C`` from the AES-CTR PRG) next to ``m`` canary examples, each included in
the training set independently with probability 1/2.

*Canaries.* The model's input has ``m`` extra coordinates, zero on every real example;
canary ``i`` is the "dirac" input ``a e_{64 + i}`` (amplitude ``a``) with the label
``y_i = i mod 10`` (the classes stay balanced). Its per-example gradient touches only its
own column of the weight matrix and the shared bias, so the canaries do not interfere with
each other (the input-space version of the dirac canaries of Steinke, Nasr and Jagielski
2023, section 7) and leave the digits task alone. After training, the auditor queries the
model at every canary's input and at the zero input and scores canary ``i`` by the gain of
its label's logit margin over the zero input's, ``s_i = g_i(theta_T) - g_i(theta_0)``
with ``g_i = m_i(a e_{64 + i}) - m_i(0)`` and ``m_i = z_{y_i} - mean_{k != y_i} z_k``
(float64): the model's outputs only, the bias cancelled, linear in the canary's column,
so its noise is Gaussian. The scores and the secret
membership go to :func:`dp.audit.one_run_audit` (abstention grid, Bonferroni), which gives
an epsilon lower bound at confidence ``1 - SIGNIFICANCE`` and at the accountant's delta.

*Accountant.* The epsilon each row is compared with is the one Opacus's PRV accountant
(``opacus.accountants.PRVAccountant``, through :class:`dp.opacus_client.OpacusClientState`)
states for the run's history ``(z, q, steps)``, as recorded by the accountant hook Opacus
attaches to the optimizer: the sample-level epsilon of one example (a canary is one
example) at ``delta``, with Poisson amplification, for the noise multiplier the accountant
is told.

**Verdict rule** (:func:`audit_refutes_accountant`, the rule of
:data:`threat_models.evaluation.audit_rule.AUDIT_RULE`): a row succeeds when the lower
bound exceeds the accountant's epsilon. The honest run must not (``expected=False``). Its
**positive control** trains with the noise multiplier :attr:`DpSgdAuditSizes.weak_noise_multiplier`
(about zero) while the accountant is told the honest run's ``z``; the audit must then
find a lower bound above the claimed epsilon (``expected=True``), or it has no power.
The sizes make every included canary sampled about ``q * steps = 10`` times, so the
control separates the canaries completely and its bound is the largest ``m`` allows on
every seed.

The membership, the train/test split and the initial weights follow ``seed``; the Poisson
sampling and the DP noise come from the AES-CTR PRG and are never seeded.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, TensorDataset

from dp.audit import OneRunAuditResult, one_run_audit
from dp.opacus_client import OpacusAccountantKind, OpacusClientState, train_private_round
from secagg.errors import InvalidParameterError
from secagg.validation import is_int
from threat_models.data import DatasetName, ImageData, load_dataset
from threat_models.evaluation.audit_rule import (
    SIGNIFICANCE,
    audit_bound_row,
)
from threat_models.evaluation.rows import PrivacyLevel, Protection, Row
from threat_models.evaluation.scoring import DELTA

__all__ = [
    "DPSGD_DEFENCE",
    "DPSGD_ACCOUNTANT",
    "DpSgdAuditSizes",
    "DpSgdAuditRun",
    "dpsgd_audit_sizes",
    "dpsgd_canary_run",
    "dpsgd_audit_row",
    "dpsgd_audit_rows",
]

#: The defence of the rows, as the report names it.
DPSGD_DEFENCE = "Opacus DP-SGD"

#: The Opacus accountant that states each run's epsilon.
DPSGD_ACCOUNTANT = OpacusAccountantKind.PRV


@dataclass(frozen=True)
class DpSgdAuditSizes:
    """Size of one audited DP-SGD run.

    Attributes:
        canaries: ``m``, canary examples (each included with probability 1/2).
        train_examples: digits in the training set (the others are the test set).
        steps_per_epoch: ``K``; the Poisson sampling rate is ``q = 1 / K`` whatever the
            number ``N`` of training examples (canaries included), the expected batch
            ``N / K``.
        epochs: passes of ``K`` steps each.
        noise_multiplier: ``z`` of the honest run (and the one the control's accountant
            is told).
        weak_noise_multiplier: ``z`` applied in the positive control.
        clip_norm: per-example clipping norm ``C``.
        learning_rate: of the SGD steps.
        canary_amplitude: ``a``, the value of a canary's one non-zero input.
    """

    canaries: int
    train_examples: int
    steps_per_epoch: int
    epochs: int
    noise_multiplier: float
    weak_noise_multiplier: float = 1e-3
    clip_norm: float = 1.0
    learning_rate: float = 0.5
    canary_amplitude: float = 3.0

    def __post_init__(self) -> None:
        counts = (self.canaries, self.train_examples, self.steps_per_epoch, self.epochs)
        if not all(is_int(c) for c in counts):
            raise InvalidParameterError("canaries, examples, steps and epochs must be ints")
        if self.canaries < 2 or self.train_examples < 1 or self.steps_per_epoch < 1:
            raise InvalidParameterError(
                "need at least 2 canaries, one training example and one step per epoch"
            )
        if self.epochs < 1:
            raise InvalidParameterError("need at least one epoch")
        positive = (
            self.noise_multiplier,
            self.weak_noise_multiplier,
            self.clip_norm,
            self.learning_rate,
            self.canary_amplitude,
        )
        for value in positive:
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise InvalidParameterError(
                    "noise multipliers, clip norm, learning rate and canary amplitude must be "
                    f"positive and finite, got {value!r}"
                )


def dpsgd_audit_sizes(quick: bool) -> DpSgdAuditSizes:
    """The sizes of the DP-SGD audit: a few seconds in quick mode, more canaries in full.

    Both sample at ``q = 1/10`` for 100 steps with ``z = 1.5`` (Opacus's PRV epsilon 3.55
    at delta 1e-5), so that every included canary is sampled about 10 times and the
    positive control separates all of them: its bound is then the largest ``m`` allows,
    about 5.0 for the quick run's 1,000 canaries and 5.7 for the full run's 4,000.
    """
    return DpSgdAuditSizes(
        canaries=1000 if quick else 4000,
        train_examples=1200,
        steps_per_epoch=10,
        epochs=10,
        noise_multiplier=1.5,
    )


@dataclass(frozen=True)
class DpSgdAuditRun:
    """One audited DP-SGD run: what the auditor found and what the accountant states.

    Attributes:
        sizes: its sizes.
        applied_noise_multiplier: ``z`` of the noise Opacus added.
        claimed_noise_multiplier: ``z`` the accountant was told.
        audit: the one-run audit of the canaries.
        accountant_epsilon: Opacus's PRV epsilon for ``(claimed z, q, steps)`` at the
            audit's delta.
        sample_rate: ``q`` of the Poisson sampling.
        steps: optimizer steps taken.
        included: canaries in the training set.
        accuracy: test accuracy of the trained model on the held-out digits.
    """

    sizes: DpSgdAuditSizes
    applied_noise_multiplier: float
    claimed_noise_multiplier: float
    audit: OneRunAuditResult
    accountant_epsilon: float
    sample_rate: float
    steps: int
    included: int
    accuracy: float


def _with_canary_columns(pixels: torch.Tensor, canaries: int) -> torch.Tensor:
    """Real examples padded with the canaries' coordinates, all zero."""
    return torch.cat([pixels, torch.zeros(pixels.shape[0], canaries)], dim=1)


def _canary_inputs(features: int, canaries: int, amplitude: float) -> torch.Tensor:
    """Canary ``i``'s input: ``amplitude`` at coordinate ``features + i``, zero elsewhere."""
    inputs = torch.zeros(canaries, features + canaries)
    inputs[torch.arange(canaries), features + torch.arange(canaries)] = amplitude
    return inputs


@torch.no_grad()
def _label_margins(
    model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor
) -> npt.NDArray[np.float64]:
    """Per input, its label's logit minus the mean of the other logits, less the same
    margin at the zero input (which cancels the bias), in float64."""
    params = {name: t.to(torch.float64) for name, t in model.state_dict().items()}
    zero = torch.zeros(1, inputs.shape[1], dtype=torch.float64)
    logits = torch.func.functional_call(model, params, (torch.cat([inputs.double(), zero]),))
    if not isinstance(logits, torch.Tensor):
        raise InvalidParameterError("the model must return one tensor of logits")
    relative = logits[:-1] - logits[-1:]
    own = relative.gather(1, labels[:, None])[:, 0]
    others = (relative.sum(dim=1) - own) / (logits.shape[1] - 1)
    return np.asarray((own - others).numpy(), dtype=np.float64)


def dpsgd_canary_run(
    sizes: DpSgdAuditSizes,
    *,
    seed: int,
    applied_noise_multiplier: float | None = None,
    claimed_noise_multiplier: float | None = None,
    delta: float = DELTA,
    significance: float = SIGNIFICANCE,
    data: ImageData | None = None,
) -> DpSgdAuditRun:
    """Train a logistic regression with Opacus DP-SGD next to canaries and audit them.

    Args:
        sizes: canaries, training examples, batch, epochs, noise multiplier.
        seed: fixes the train/test split, the canaries' membership and the initial weights
            (the Poisson sampling and the noise are never seeded).
        applied_noise_multiplier: ``z`` of the noise added (default
            ``sizes.noise_multiplier``).
        claimed_noise_multiplier: ``z`` the accountant is told (default: the applied one,
            the honest run; a larger one makes the positive control).
        delta: delta of the accountant's epsilon and of the audit's hypothesis.
        significance: of the audit's lower bound.
        data: the digits (default: loaded here).

    Raises:
        InvalidParameterError: a noise multiplier that is not positive and finite, a seed
            that is not a non-negative int, or too few digits for the split.
    """
    if not is_int(seed) or seed < 0:
        raise InvalidParameterError(f"seed must be a non-negative int, got {seed!r}")
    applied = (
        sizes.noise_multiplier if applied_noise_multiplier is None else applied_noise_multiplier
    )
    claimed = applied if claimed_noise_multiplier is None else claimed_noise_multiplier
    for z in (applied, claimed):
        if not (isinstance(z, (int, float)) and z > 0 and math.isfinite(z)):
            raise InvalidParameterError(f"noise multipliers must be positive and finite, got {z!r}")
    digits = load_dataset(DatasetName.DIGITS) if data is None else data
    if sizes.train_examples >= len(digits):
        raise InvalidParameterError("the training set leaves no digit for the test set")
    rng = np.random.default_rng([seed, 15])
    order = rng.permutation(len(digits))
    train, test = order[: sizes.train_examples], order[sizes.train_examples :]
    included = rng.random(sizes.canaries) < 0.5
    pixels = digits.images.reshape(len(digits), -1)
    features = int(pixels.shape[1])
    m = sizes.canaries
    probes = _canary_inputs(features, m, sizes.canary_amplitude)
    canary_labels = torch.arange(m) % digits.num_classes
    chosen = torch.as_tensor(np.flatnonzero(included))
    members = probes[chosen]
    inputs = torch.cat([_with_canary_columns(pixels[train], m), members])
    labels = torch.cat(
        [
            digits.labels[train],
            canary_labels[chosen],
        ]
    )
    generator = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(features + m, digits.num_classes)
    with torch.no_grad():
        bound = 1.0 / math.sqrt(features + m)
        model.weight.uniform_(-bound, bound, generator=generator)
        model.bias.uniform_(-bound, bound, generator=generator)
    before = _label_margins(model, probes, canary_labels)
    batch = math.ceil(len(labels) / sizes.steps_per_epoch)
    loader: DataLoader[tuple[torch.Tensor, ...]] = DataLoader(
        TensorDataset(inputs, labels), batch_size=batch
    )
    if len(loader) != sizes.steps_per_epoch:
        raise InvalidParameterError(
            f"{len(labels)} training examples cannot make {sizes.steps_per_epoch} batches"
        )
    lr = sizes.learning_rate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus's notices about secure mode and hooks
        result = train_private_round(
            model,
            lambda params: torch.optim.SGD(params, lr=lr),
            loader,
            noise_multiplier=float(applied),
            max_grad_norm=sizes.clip_norm,
            epochs=sizes.epochs,
            accountant=DPSGD_ACCOUNTANT,
        )
    model.load_state_dict(result.state_dict)
    scores = _label_margins(model, probes, canary_labels) - before
    audit = one_run_audit(scores, included, delta=delta, significance=significance)
    told = OpacusClientState(
        accountant=DPSGD_ACCOUNTANT,
        history=tuple((float(claimed), q, steps) for _, q, steps in result.client_state.history),
    )
    with torch.no_grad():
        predicted = model(_with_canary_columns(pixels[test], m)).argmax(dim=1)
    accuracy = float((predicted == digits.labels[test]).to(torch.float64).mean())
    return DpSgdAuditRun(
        sizes=sizes,
        applied_noise_multiplier=float(applied),
        claimed_noise_multiplier=float(claimed),
        audit=audit,
        accountant_epsilon=told.epsilon(delta),
        sample_rate=result.sample_rate,
        steps=result.steps,
        included=int(np.sum(included)),
        accuracy=accuracy,
    )


def dpsgd_audit_row(run: DpSgdAuditRun, *, positive_control: bool = False) -> Row:
    """The row of one audited DP-SGD run: metric ``epsilon_lower_bound``, baseline and
    threshold the accountant's epsilon, verdict :func:`audit_refutes_accountant`.

    An honest run is expected not to refute its accountant; a positive control (the
    accountant told more noise than was applied) is expected to.
    """
    res, sizes = run.audit, run.sizes
    if positive_control:
        defense = (
            f"{DPSGD_DEFENCE}, z = {run.applied_noise_multiplier:g} applied, "
            f"accountant told z = {run.claimed_noise_multiplier:g}"
        )
        protection = Protection.UNHARDENED
    else:
        defense = f"{DPSGD_DEFENCE}, z = {run.applied_noise_multiplier:g}"
        protection = Protection.DP
    note = (
        f"m = {res.num_canaries} dirac canaries ({run.included} included), {run.steps} steps, "
        f"z = {run.applied_noise_multiplier:g} applied, q = {run.sample_rate:.4g}; "
        f"accountant: Opacus PRV told z = {run.claimed_noise_multiplier:g}; "
        f"{res.num_guesses} guesses ({res.num_correct} correct, best of {res.candidates} "
        f"abstention levels, Bonferroni), confidence {1 - res.significance:.0%}"
    )
    return audit_bound_row(
        attack="one-run canary audit (examples)",
        defense=defense,
        setting=(
            f"{DPSGD_DEFENCE}: logistic regression on digits ({sizes.train_examples} train), "
            f"{sizes.canaries} canaries, q = 1/{sizes.steps_per_epoch}, {sizes.epochs} epochs, "
            f"clip {sizes.clip_norm:g}"
        ),
        audit=res,
        accountant_epsilon=run.accountant_epsilon,
        positive_control=positive_control,
        protection=protection,
        note=note,
        level=PrivacyLevel.SAMPLE,
        noise_multiplier=run.applied_noise_multiplier,
        accuracy=run.accuracy,
    )


def dpsgd_audit_rows(run_seed: int, quick: bool) -> list[Row]:
    """The honest DP-SGD audit and its positive control (the accountant told the honest
    ``z`` while about none is applied), as two rows."""
    sizes = dpsgd_audit_sizes(quick)
    seed = run_seed * 1_000 + 800
    data = load_dataset(DatasetName.DIGITS)
    honest = dpsgd_canary_run(sizes, seed=seed, data=data)
    control = dpsgd_canary_run(
        sizes,
        seed=seed + 1,
        applied_noise_multiplier=sizes.weak_noise_multiplier,
        claimed_noise_multiplier=sizes.noise_multiplier,
        data=data,
    )
    return [dpsgd_audit_row(honest), dpsgd_audit_row(control, positive_control=True)]
