"""The vocabulary of the evaluation matrix: rows, verdicts, what a defense consists of.

A :class:`Row` is one number of the matrix. Its verdict is typed: ``succeeded`` (the
attack met its success criterion), ``expected`` (what an honest harness must observe),
``positive_control`` (a run where the attack must succeed, or the evaluation proves
nothing) and :class:`Protection` (what the defense consists of). Every rule that reads
verdicts -- :attr:`Row.expectation`, the matrix's controls, the report's "not stopped by
secure aggregation" and "stopped by the hardening" lists -- reads these fields, never the
human-readable ``attack`` and ``defense`` labels.

A row under DP noise also states the privacy it corresponds to: ``epsilon`` at ``delta``,
at the level :class:`PrivacyLevel` names (``None`` on a row without DP noise).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from secagg.errors import raise_missing_extra
from secagg.outputs import NON_FINITE_KEY, strict_json

try:
    import torch
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.evaluation")

__all__ = [
    "Family",
    "Outcome",
    "Expectation",
    "Protection",
    "PrivacyLevel",
    "Row",
    "ImagePanel",
    "Series",
    "Figure",
    "CellOutput",
    "strict_document",
]


class Family(str, enum.Enum):
    """Attack families of the matrix."""

    GRADIENT_INVERSION = "gradient_inversion"
    MEMBERSHIP = "membership_inference"
    MODEL_LEVEL = "malicious_server_model"
    PROTOCOL_LEVEL = "malicious_server_protocol"
    #: canaries under each DP defence: the one-run epsilon lower bound against the accountant
    EMPIRICAL_AUDIT = "empirical_audit"


class Outcome(str, enum.Enum):
    """What the attack did in a cell, by the success criteria of :mod:`threat_models.evaluation`."""

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


class Protection(str, enum.Enum):
    """What the defense of a row consists of.

    The report's lists read it: an attack that succeeds against
    :attr:`SECURE_AGGREGATION` or :attr:`SECURE_AGGREGATION_DP` is one secure aggregation
    as deployed does not stop; an attack that succeeds against :attr:`UNHARDENED` and fails
    against :attr:`SECURE_AGGREGATION` is stopped by the hardening, not by masking.
    """

    #: nothing: the server sees the plaintext update, or the released model
    NONE = "none"
    #: the protocol with the checks against this attack switched off (explicit opt-in)
    UNHARDENED = "unhardened baseline"
    #: the hardened protocol (masking or Paillier), no noise
    SECURE_AGGREGATION = "secure aggregation"
    #: the hardened protocol and distributed DP noise sized for the honest cohort, which
    #: relies on secure aggregation hiding each client's share
    SECURE_AGGREGATION_DP = "secure aggregation + distributed DP"
    #: noise that does not rely on secure aggregation: on one client's update, in DP-SGD,
    #: or distributed DP whose every share is sized for the colluders
    DP = "DP"


class PrivacyLevel(str, enum.Enum):
    """Whose privacy a row's epsilon bounds.

    The unit whose whole contribution the clipping bounds: one client's update
    (user-level) or one training example (sample-level, as in DP-SGD).
    """

    #: one client: everything it contributes to the releases the attacker observes
    USER = "user"
    #: one training example of one client
    SAMPLE = "sample"


@dataclass(frozen=True)
class Row:
    """One number of the matrix (the fields are described in :mod:`threat_models.evaluation`).

    ``protection`` is not part of the JSON row (:meth:`to_json`), which keeps the keys the
    ``--json`` output has always had. ``epsilon``, ``delta`` and ``epsilon_level`` state the
    privacy of a row under DP noise (``epsilon`` at ``delta`` for one unit of
    ``epsilon_level``, composed over the releases the attack observes); all three are
    ``None`` on a row without DP noise; ``noise_multiplier`` is that noise's std over the
    clipping norm, per release.

    ``accuracy`` is the test accuracy of the model trained under the row's defence
    (``None`` where no model is trained). ``threshold`` is the success criterion when it is
    a threshold on ``value``: the attack succeeds when ``value >= threshold``
    (``threshold_above``) or ``value <= threshold`` (otherwise); ``None`` when the verdict
    is not a threshold on the value (e.g. a protocol attack's recovered-or-not).
    ``seeds`` is the number of seeds ``value`` is the mean over and ``ci_low``, ``ci_high``
    its confidence interval (``None`` for one seed).
    """

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
    protection: Protection = Protection.NONE
    epsilon: float | None = None
    delta: float | None = None
    epsilon_level: PrivacyLevel | None = None
    noise_multiplier: float | None = None
    accuracy: float | None = None
    threshold: float | None = None
    threshold_above: bool = True
    seeds: int = 1
    ci_low: float | None = None
    ci_high: float | None = None

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

    def json_fields(self) -> dict[str, object]:
        """The JSON row before the strict rule: every field but ``protection``."""
        out = asdict(self)
        del out["protection"]
        out["family"] = self.family.value
        out["epsilon_level"] = None if self.epsilon_level is None else self.epsilon_level.value
        return out

    def to_json(self) -> dict[str, object]:
        """The row as strict JSON (the rule of :mod:`secagg.outputs`: a non-finite
        ``value`` or ``baseline`` is ``null``, named under ``"non_finite"``)."""
        return strict_document(self.json_fields())


def strict_document(document: Mapping[str, object]) -> dict[str, object]:
    """``document`` under the strict JSON rule of :mod:`secagg.outputs`."""
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
