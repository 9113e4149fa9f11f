"""Privacy budgets: the limits a ledger enforces and the report of where each one stands.

A :class:`PrivacyBudget` limits the epsilon at a delta of one :class:`BudgetScope`
(population, per client, or sample level; see :mod:`dp.ledger`).
:meth:`dp.ledger.PrivacyLedger.spend` checks every budget before a round and answers with
a :class:`SpendReport` of one :class:`BudgetStatus` per budget, or refuses the round with
:class:`~secagg.errors.BudgetExceededError` (its message from :func:`refusal_message`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from secagg.errors import InvalidParameterError
from secagg.validation import require_real

__all__ = ["BudgetScope", "BudgetStatus", "PrivacyBudget", "SpendReport", "refusal_message"]


class BudgetScope(str, Enum):
    """Which epsilon a budget limits (see the module docstring)."""

    POPULATION = "population"
    PER_CLIENT = "per_client"
    SAMPLE_LEVEL = "sample_level"


@dataclass(frozen=True)
class PrivacyBudget:
    """A limit ``epsilon`` on the epsilon at ``delta`` of one :class:`BudgetScope`."""

    epsilon: float
    delta: float
    scope: BudgetScope = BudgetScope.POPULATION

    def __post_init__(self) -> None:
        eps = require_real("budget epsilon", self.epsilon)
        if eps <= 0:
            raise InvalidParameterError(f"budget epsilon must be positive, got {eps}")
        delta = require_real("budget delta", self.delta)
        if not 0.0 < delta < 1.0:
            raise InvalidParameterError(f"budget delta must lie in (0, 1), got {delta}")
        object.__setattr__(self, "scope", BudgetScope(self.scope))

    def to_dict(self) -> dict[str, object]:
        """JSON-compatible dictionary of this budget."""
        return {"epsilon": self.epsilon, "delta": self.delta, "scope": self.scope.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PrivacyBudget:
        """Inverse of :meth:`to_dict`; a malformed dictionary is an ``InvalidParameterError``."""
        fields: Mapping[str, Any] = data  # parsed JSON: converted and checked below
        try:
            return cls(
                float(fields["epsilon"]), float(fields["delta"]), BudgetScope(fields["scope"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParameterError(f"malformed budget {data!r}: {exc}") from exc


@dataclass(frozen=True)
class BudgetStatus:
    """Epsilon tracked for one budget, after the round in question."""

    budget: PrivacyBudget
    epsilon: float
    worst_client: str | None = None

    @property
    def exceeded(self) -> bool:
        """Whether the tracked epsilon is above the budget."""
        return self.epsilon > self.budget.epsilon

    @property
    def remaining(self) -> float:
        """Epsilon left before the budget is reached (negative once exceeded)."""
        return self.budget.epsilon - self.epsilon


@dataclass(frozen=True)
class SpendReport:
    """Result of :meth:`PrivacyLedger.preview` / :meth:`PrivacyLedger.spend`."""

    round: int
    statuses: tuple[BudgetStatus, ...]

    @property
    def exceeded(self) -> tuple[BudgetStatus, ...]:
        """The statuses whose budget would be exceeded."""
        return tuple(s for s in self.statuses if s.exceeded)


def refusal_message(report: SpendReport) -> str:
    """Why the round of ``report`` is refused: each exceeded budget with its epsilon."""
    parts = []
    for s in report.exceeded:
        who = f" (client {s.worst_client})" if s.worst_client is not None else ""
        parts.append(
            f"{s.budget.scope.value} epsilon would reach {s.epsilon:.4g}{who} at "
            f"delta={s.budget.delta:g}, over the budget {s.budget.epsilon:g}"
        )
    return f"round {report.round} refused: " + "; ".join(parts)
