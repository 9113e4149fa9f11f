"""Privacy ledger: what was applied, to whom, round by round; budgets enforced before spending.

A :class:`PrivacyLedger` holds one immutable :class:`RoundRecord` per federated round:

* ``mechanism`` -- the DP event applied to the aggregate of the round's cohort, *before*
  client sampling (e.g. ``GaussianDpEvent(z)`` for DP-FedAvg with noise multiplier ``z``,
  or a :class:`~dp.events.DistributedDiscreteGaussianDpEvent`);
* ``sampling`` -- how the cohort was drawn from the population (:class:`ClientSampling`);
* ``participants`` -- the ids of the clients whose data may enter the aggregate;
* ``local_dp_sgd`` -- per client, the DP-SGD steps run locally (from its Opacus accountant).

Three granularities are tracked (:class:`BudgetScope`):

``POPULATION``
    User-level DP for any member of the population (McMahan et al., ICLR 2018): each
    round is the mechanism under Poisson subsampling with rate ``q = clients per round /
    population`` (``q = 1``: every client every round), composed over the rounds.
``PER_CLIENT``
    For each client, the composition of the mechanisms of the rounds it actually took
    part in, *without* amplification by sampling: the server knows who was selected, so
    a client's own guarantee conditioned on its participation is the honest figure.
``SAMPLE_LEVEL``
    For each client, record-level DP of its local data from the DP-SGD steps it ran
    (Opacus' history ``(noise_multiplier, sample_rate, steps)``), composed over rounds.

**Budget enforcement (check, then commit).** Call :meth:`PrivacyLedger.spend` *before*
any noise is drawn or any update leaves a client, with the planned round (its cohort and
the weakest mechanism the protocol may end up applying -- e.g. the distributed noise of
the smallest number of survivors it accepts). ``spend`` computes every tracked epsilon as
if the round were recorded, raises :class:`~secagg.errors.BudgetExceededError` and
records nothing if any budget would be exceeded, and otherwise appends the round.
:meth:`PrivacyLedger.preview` performs the same check without recording anything::

    ledger = PrivacyLedger(budgets=[PrivacyBudget(epsilon=8.0, delta=1e-5)])
    record = RoundRecord(GaussianDpEvent(1.0), ClientSampling.from_counts(100, 10_000),
                         participants=cohort)
    ledger.spend(record)          # raises BudgetExceededError before anything is spent
    ...run the round...
    ledger.save("ledger.json")

The ledger is persisted as versioned JSON (:meth:`PrivacyLedger.to_json`,
:meth:`PrivacyLedger.load`, written by :mod:`dp.ledger_store`); the events are serialised
with :func:`dp.event_json.event_to_dict`. :meth:`PrivacyLedger.save` seals the file with an
HMAC-SHA256 whose key sits in a private key file next to it (or is held by the caller);
:meth:`PrivacyLedger.load` refuses, with :class:`~secagg.errors.LedgerIntegrityError`, a
file that was edited, replaced by an older copy or by another run's ledger, and an
unsigned file unless ``allow_unsigned=True``. :meth:`PrivacyLedger.from_json` and
:meth:`PrivacyLedger.from_dict` parse without any check.

Which epsilon holds against whom: :meth:`PrivacyLedger.population_epsilon` is amplified
by the cohort sampling and holds only against an adversary who neither chooses nor learns
the sample; :meth:`PrivacyLedger.worst_client_epsilon` (the largest per-client figure
from actual participation) holds against a server that chooses or observes the cohort.

The ledger's parts live in the modules named after them: the entries in
:mod:`dp.ledger_entries`, the budgets in :mod:`dp.budget`, the file format and its seal
in :mod:`dp.ledger_store`; this module re-exports their public names.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import dp_accounting
from tqdm import tqdm

from dp.accountants.base import DEFAULT_PLD_DISCRETIZATION, AccountantKind, NeighboringRelation
from dp.accountants.distributed_pld import contains_distributed_discrete_gaussian
from dp.accountants.factory import check_supported, compute_delta
from dp.budget import BudgetScope, BudgetStatus, PrivacyBudget, SpendReport, refusal_message
from dp.compositions import CompositionCache, Pattern, pattern_of
from dp.ledger_entries import (
    ClientSampling,
    LocalDpSgd,
    RoundRecord,
    SamplingScheme,
    local_dp_sgd_from_opacus,
)
from dp.ledger_store import (
    KEY_SUFFIX,
    LEDGER_FORMAT,
    LEDGER_VERSION,
    READABLE_VERSIONS,
    check_not_rolled_back,
    ledger_mac,
    read_ledger_file,
    write_ledger_file,
)
from secagg.errors import BudgetExceededError, InvalidParameterError, UnsupportedEventError
from secagg.validation import is_int, require_positive

__all__ = [
    "LEDGER_FORMAT",
    "LEDGER_VERSION",
    "BudgetScope",
    "SamplingScheme",
    "PrivacyBudget",
    "ClientSampling",
    "LocalDpSgd",
    "RoundRecord",
    "BudgetStatus",
    "SpendReport",
    "PrivacyLedger",
    "local_dp_sgd_from_opacus",
    "curve_rounds",
    "ledger_mac",
    "KEY_SUFFIX",
]


@dataclass(frozen=True)
class _RoundKeys:
    """Canonical keys of one round's events (computed once per round)."""

    population: str
    mechanism: str
    participants: tuple[str, ...] | None
    local: tuple[tuple[str, Pattern], ...]


class PrivacyLedger:
    """Round-by-round record of the DP mechanisms applied, with budget enforcement.

    Composition is commutative for every accountant used here, so each granularity is
    kept as counts of distinct events (per client for the per-client and sample levels)
    and epsilons are cached per distinct composition: checking a round costs one
    accountant call per new composition, not one per client.

    Args:
        budgets: limits to enforce in :meth:`spend` (any number, any scopes).
        accountant: accountant used for enforcement and by default for reports.
        neighboring_relation: neighbouring relation of the guarantees (add/remove one
            user -- or one record, for the sample level -- by default).
        pld_discretization: value discretization interval of the PLD accountant.
    """

    def __init__(
        self,
        *,
        budgets: Iterable[PrivacyBudget] = (),
        accountant: AccountantKind | str = AccountantKind.PLD,
        neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
        pld_discretization: float = DEFAULT_PLD_DISCRETIZATION,
    ) -> None:
        self._budgets = tuple(budgets)
        if not all(isinstance(b, PrivacyBudget) for b in self._budgets):
            raise InvalidParameterError("budgets must be PrivacyBudget instances")
        self._accountant = AccountantKind.parse(accountant)
        if not isinstance(neighboring_relation, NeighboringRelation):
            raise InvalidParameterError(
                "neighboring_relation must be a dp_accounting.NeighboringRelation"
            )
        self._relation = neighboring_relation
        self._pld_discretization = require_positive("pld_discretization", pld_discretization)
        self._rounds: list[RoundRecord] = []
        self._keys: list[_RoundKeys] = []
        self._population_counts: Counter[str] = Counter()
        self._client_counts: dict[str, Counter[str]] = {}
        self._unknown_counts: Counter[str] = Counter()  # rounds without a participant list
        self._sample_counts: dict[str, Counter[str]] = {}
        self._compositions = CompositionCache(neighboring_relation, self._pld_discretization)
        self._ledger_id = secrets.token_hex(16)

    # ---------------------------------------------------------------- properties
    @property
    def rounds(self) -> tuple[RoundRecord, ...]:
        """The recorded rounds; round ``i`` (1-based) is ``rounds[i - 1]``."""
        return tuple(self._rounds)

    @property
    def budgets(self) -> tuple[PrivacyBudget, ...]:
        """The budgets :meth:`spend` enforces."""
        return self._budgets

    @property
    def accountant(self) -> AccountantKind:
        """The accountant used for enforcement and, by default, for reports."""
        return self._accountant

    @property
    def neighboring_relation(self) -> NeighboringRelation:
        """The neighbouring relation of every guarantee the ledger reports."""
        return self._relation

    @property
    def pld_discretization(self) -> float:
        """Value discretization interval of the PLD accountant."""
        return self._pld_discretization

    @property
    def ledger_id(self) -> str:
        """Random id of this ledger (kept across save/load); a signature binds it."""
        return self._ledger_id

    def __len__(self) -> int:
        return len(self._rounds)

    def clients(self) -> tuple[str, ...]:
        """Every client id that appears as a participant or with local DP-SGD steps."""
        seen: dict[str, None] = {}
        for r in self._rounds:
            for c in r.participants or ():
                seen[c] = None
            for c in r.local_dp_sgd:
                seen[c] = None
        return tuple(seen)

    # ---------------------------------------------------------------- bookkeeping
    def _round_keys(self, record: RoundRecord) -> _RoundKeys:
        local = []
        for client, steps in record.local_dp_sgd.items():
            counts: Counter[str] = Counter()
            for s in steps:
                if s.steps > 0:
                    counts[
                        self._compositions.key(
                            LocalDpSgd(s.noise_multiplier, s.sample_rate, 1).event()
                        )
                    ] += s.steps
            local.append((client, pattern_of(counts)))
        return _RoundKeys(
            population=self._compositions.key(record.population_event),
            mechanism=self._compositions.key(record.mechanism),
            participants=record.participants,
            local=tuple(local),
        )

    def _append(self, record: RoundRecord, keys: _RoundKeys) -> None:
        self._rounds.append(record)
        self._keys.append(keys)
        self._population_counts[keys.population] += 1
        if keys.participants is None:
            self._unknown_counts[keys.mechanism] += 1
        for c in keys.participants or ():
            self._client_counts.setdefault(c, Counter())[keys.mechanism] += 1
        for c, pattern in keys.local:
            counter = self._sample_counts.setdefault(c, Counter())
            for k, n in pattern:
                counter[k] += n

    def _population_pattern(self, upto: int) -> Pattern:
        if upto == len(self._keys):
            return pattern_of(self._population_counts)
        return pattern_of(Counter(k.population for k in self._keys[:upto]))

    # ---------------------------------------------------------------- events
    def population_event(self, upto: int | None = None) -> dp_accounting.DpEvent:
        """Composed population-level event of rounds ``1..upto`` (all by default)."""
        return self._compositions.event(self._population_pattern(self._upto(upto)))

    def client_events(self) -> dict[str, dp_accounting.DpEvent]:
        """Per client, the composed mechanisms of the rounds it took part in (no sampling)."""
        return {c: self._compositions.event(pattern_of(n)) for c, n in self._client_counts.items()}

    def sample_level_events(self) -> dict[str, dp_accounting.DpEvent]:
        """Per client, the composed local DP-SGD steps (record-level)."""
        return {c: self._compositions.event(pattern_of(n)) for c, n in self._sample_counts.items()}

    # ---------------------------------------------------------------- epsilons
    def _kind(self, accountant: AccountantKind | str | None) -> AccountantKind:
        return self._accountant if accountant is None else AccountantKind.parse(accountant)

    def _upto(self, upto: int | None) -> int:
        if upto is None:
            return len(self._rounds)
        if not is_int(upto) or not 0 <= upto <= len(self._rounds):
            raise InvalidParameterError(f"upto must be an integer in [0, {len(self._rounds)}]")
        return int(upto)

    def population_epsilon(
        self,
        delta: float,
        *,
        accountant: AccountantKind | str | None = None,
        upto: int | None = None,
    ) -> float:
        """User-level epsilon at ``delta`` for any member of the population, after ``upto`` rounds.

        This is the *amplified* figure: each round is the mechanism under the cohort
        sampling (``PoissonSampledDpEvent`` with ``q = clients per round / population``).
        It holds only against an adversary who neither chooses nor learns which clients
        were sampled; a server that picks or sees the cohort is bounded by
        :meth:`worst_client_epsilon` instead.
        """
        return self._compositions.epsilon(
            self._population_pattern(self._upto(upto)), delta, self._kind(accountant)
        )

    def population_delta(
        self,
        epsilon: float,
        *,
        accountant: AccountantKind | str | None = None,
        upto: int | None = None,
    ) -> float:
        """User-level delta at ``epsilon`` for any member of the population."""
        event = self.population_event(upto)
        if isinstance(event, dp_accounting.NoOpDpEvent):
            return 0.0
        return compute_delta(
            event,
            epsilon,
            accountant=self._kind(accountant),
            neighboring_relation=self._relation,
            pld_discretization=self._pld_discretization,
        )

    def client_epsilons(
        self, delta: float, *, accountant: AccountantKind | str | None = None
    ) -> dict[str, float]:
        """Per-client epsilon at ``delta`` from actual participation (no amplification)."""
        kind = self._kind(accountant)
        return {
            c: self._compositions.epsilon(pattern_of(n), delta, kind)
            for c, n in self._client_counts.items()
        }

    def worst_client_epsilon(
        self, delta: float, *, accountant: AccountantKind | str | None = None
    ) -> float:
        """The largest per-client epsilon at ``delta`` from actual participation.

        For each client, the composition of the mechanisms of the rounds it took part in,
        with no amplification by sampling (:meth:`client_epsilons`); the maximum over the
        clients. This figure holds against a server that chooses or observes the cohort
        (as the server of a federated round does unless the clients sample themselves in a
        way it can neither bias nor see). A round whose participants were not recorded
        counts against every client (the server may have included anyone), so with such
        rounds this is at least the epsilon of all of them composed. ``0`` for an empty
        ledger.
        """
        kind = self._kind(accountant)
        unknown: Counter[str] = Counter(self._unknown_counts)
        worst = self._compositions.epsilon(pattern_of(unknown), delta, kind) if unknown else 0.0
        for counts in self._client_counts.values():
            worst = max(
                worst, self._compositions.epsilon(pattern_of(counts + unknown), delta, kind)
            )
        return worst

    def sample_level_epsilons(
        self, delta: float, *, accountant: AccountantKind | str | None = None
    ) -> dict[str, float]:
        """Per-client record-level epsilon at ``delta`` from the local DP-SGD steps.

        By default the tightest valid figure: each client's steps are (Poisson-subsampled)
        Gaussians, accounted by both the PLD and the RDP accountant, and the smaller of the
        two upper bounds is reported (in practice the PLD's; the RDP one where the PLD
        accountant refuses the size). ``accountant`` forces one accountant.
        """
        kind = None if accountant is None else AccountantKind.parse(accountant)
        return {
            c: self._compositions.epsilon(pattern_of(n), delta, kind)
            for c, n in self._sample_counts.items()
        }

    def epsilon_curve(
        self,
        delta: float,
        *,
        accountant: AccountantKind | str | None = None,
        points: int | None = None,
        progress: bool = False,
    ) -> list[tuple[int, float]]:
        """Population epsilon at ``delta`` after each round (or ``points`` evenly spaced rounds).

        Args:
            delta: target delta.
            accountant: accountant (the ledger's by default).
            points: number of rounds to evaluate, always including the last one; all
                rounds when ``None``.
            progress: show a progress bar on a terminal.

        Returns:
            ``[(round, epsilon), ...]`` in increasing round order.
        """
        total = len(self._rounds)
        kind = self._kind(accountant)
        if total == 0:
            return []
        wanted = curve_rounds(total, points)
        bar = tqdm(
            total=len(wanted),
            desc="accounting",
            unit="pt",
            disable=not (progress and sys.stderr.isatty()),
        )
        curve: list[tuple[int, float]] = []
        counts: Counter[str] = Counter()
        targets = iter(wanted)
        target = next(targets)
        with bar:
            for t, keys in enumerate(self._keys, start=1):
                counts[keys.population] += 1
                if t == target:
                    curve.append((t, self._compositions.epsilon(pattern_of(counts), delta, kind)))
                    bar.update(1)
                    target = next(targets, 0)
        return curve

    # ---------------------------------------------------------------- enforcement
    def _scope_max(
        self,
        counts: Mapping[str, Counter[str]],
        extra: Mapping[str, Pattern],
        delta: float,
        kind: AccountantKind | None,
    ) -> tuple[str | None, float]:
        worst, worst_eps = None, 0.0
        for client in {*counts, *extra}:
            counter: Counter[str] = Counter(counts.get(client, Counter()))
            for k, n in extra.get(client, ()):
                counter[k] += n
            eps = self._compositions.epsilon(pattern_of(counter), delta, kind)
            if worst is None or eps > worst_eps or (eps == worst_eps and client < worst):
                worst, worst_eps = client, eps
        return worst, worst_eps

    def _statuses(
        self,
        keys: _RoundKeys | None,
        kind: AccountantKind,
        sample_kind: AccountantKind | None = None,
    ) -> tuple[BudgetStatus, ...]:
        population = Counter(self._population_counts)
        client_extra: dict[str, Pattern] = {}
        sample_extra: dict[str, Pattern] = {}
        if keys is not None:
            population[keys.population] += 1
            client_extra = {c: ((keys.mechanism, 1),) for c in keys.participants or ()}
            sample_extra = dict(keys.local)
        statuses: list[BudgetStatus] = []
        for budget in self._budgets:
            if budget.scope is BudgetScope.POPULATION:
                statuses.append(
                    BudgetStatus(
                        budget,
                        self._compositions.epsilon(pattern_of(population), budget.delta, kind),
                    )
                )
            elif budget.scope is BudgetScope.PER_CLIENT:
                who, eps = self._scope_max(self._client_counts, client_extra, budget.delta, kind)
                statuses.append(BudgetStatus(budget, eps, who))
            else:
                who, eps = self._scope_max(
                    self._sample_counts, sample_extra, budget.delta, sample_kind
                )
                statuses.append(BudgetStatus(budget, eps, who))
        return tuple(statuses)

    def _check(self, record: RoundRecord) -> tuple[SpendReport, _RoundKeys]:
        if not isinstance(record, RoundRecord):
            raise InvalidParameterError("expected a RoundRecord")
        if record.participants is None and any(
            b.scope is BudgetScope.PER_CLIENT for b in self._budgets
        ):
            raise InvalidParameterError("a per-client budget needs the round's participants")
        # Refuse a mechanism the ledger's accountant cannot account for, budget or not
        # (distributed discrete Gaussian noise is always accounted, see dp.compositions).
        try:
            check_supported(
                record.population_event, self._accountant, neighboring_relation=self._relation
            )
        except UnsupportedEventError:
            if self._accountant is AccountantKind.PRV or not contains_distributed_discrete_gaussian(
                record.population_event
            ):
                raise
            check_supported(
                record.population_event, AccountantKind.RDP, neighboring_relation=self._relation
            )
        keys = self._round_keys(record)
        report = SpendReport(len(self._rounds) + 1, self._statuses(keys, self._accountant))
        if report.exceeded:
            raise BudgetExceededError(refusal_message(report))
        return report, keys

    def preview(self, record: RoundRecord) -> SpendReport:
        """Every tracked epsilon if ``record`` were recorded next; records nothing.

        Raises:
            BudgetExceededError: some budget would be exceeded; the message names it.
            UnsupportedEventError: the ledger's accountant cannot handle the mechanism.
            InvalidParameterError: ``record`` is malformed, or a per-client budget is set
                and the record has no participants.
        """
        return self._check(record)[0]

    def spend(self, record: RoundRecord) -> SpendReport:
        """Check every budget with ``record`` added, then record it (atomically).

        Call this before the round draws any noise or any update leaves a client. If a
        budget would be exceeded, :class:`~secagg.errors.BudgetExceededError` is raised
        and the ledger is unchanged.
        """
        report, keys = self._check(record)
        self._append(record, keys)
        return report

    def report(self, *, accountant: AccountantKind | str | None = None) -> SpendReport:
        """Current status of every budget."""
        sample_kind = None if accountant is None else AccountantKind.parse(accountant)
        return SpendReport(
            len(self._rounds), self._statuses(None, self._kind(accountant), sample_kind)
        )

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, object]:
        """The ledger as a JSON-compatible dictionary (what :meth:`save` signs)."""
        return {
            "format": LEDGER_FORMAT,
            "version": LEDGER_VERSION,
            "ledger_id": self._ledger_id,
            "accountant": self._accountant.value,
            "neighboring_relation": self._relation.name,
            "pld_discretization": self._pld_discretization,
            "budgets": [b.to_dict() for b in self._budgets],
            "rounds": [{"round": i + 1, **r.to_dict()} for i, r in enumerate(self._rounds)],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The ledger as versioned JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        key: bytes | None = None,
        key_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """Write the ledger to ``path`` atomically, sealed with an HMAC-SHA256.

        The MAC (:func:`ledger_mac`) covers the canonical JSON of the whole ledger --
        every round, the ledger id, the accountant, the budgets -- and is stored in the
        file's ``"integrity"`` field. :meth:`load` recomputes it and refuses any mismatch.

        Without ``key``, the key lives in a key file (``path + ".key"`` unless
        ``key_path`` says otherwise), created with mode 0600 from
        ``secrets.token_bytes(32)`` on the first save and reused afterwards. The key file
        also records the ledger's id and the number of rounds last saved, so that
        :meth:`load` refuses an older, validly signed copy put in place of the newer one
        (a rollback), and so does this method if asked to overwrite a ledger with fewer
        rounds of the same run. A key file of another ledger is replaced with a fresh key.
        With an explicit ``key`` (the caller keeps it, e.g. in a secrets store), no key
        file is written; pass ``min_rounds`` to :meth:`load` to catch rollbacks.

        What this protects against: anyone who can write the ledger file but cannot read
        the key -- another user, a backup or transfer in between, a server that stores the
        file -- cannot drop, reorder or edit a round, change a noise multiplier, swap an
        event for a no-op or change a budget without :meth:`load` (and so ``secagg
        audit``) failing with :class:`~secagg.errors.LedgerIntegrityError`. What it does
        not protect against: the key holder itself (whoever can read the key can re-sign
        anything), someone who can write the key file as well, and -- with an explicit
        key and no ``min_rounds`` -- the replacement of the whole file by an older copy
        signed with the same key. It says nothing about whether the recorded events
        describe what the training actually did.

        Raises:
            LedgerIntegrityError: the key file is unreadable, not private to its owner, or
                records more rounds of this ledger than are being saved.
        """
        write_ledger_file(
            path,
            self.to_dict(),
            ledger_id=self._ledger_id,
            rounds=len(self._rounds),
            key=key,
            key_path=key_path,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PrivacyLedger:
        """Rebuild a ledger; the recorded rounds are history and are not re-checked."""
        fields: Mapping[str, Any] = data  # parsed JSON: converted and checked below
        if not isinstance(data, Mapping) or fields.get("format") != LEDGER_FORMAT:
            raise InvalidParameterError(f"not a privacy ledger (expected format {LEDGER_FORMAT!r})")
        version = fields.get("version")
        if version not in READABLE_VERSIONS:
            raise InvalidParameterError(
                f"unsupported ledger version {version!r} (this library reads {READABLE_VERSIONS})"
            )
        try:
            relation = NeighboringRelation[fields.get("neighboring_relation", "ADD_OR_REMOVE_ONE")]
            ledger = cls(
                budgets=[PrivacyBudget.from_dict(b) for b in fields.get("budgets", [])],
                accountant=fields.get("accountant", AccountantKind.PLD.value),
                neighboring_relation=relation,
                pld_discretization=float(
                    fields.get("pld_discretization", DEFAULT_PLD_DISCRETIZATION)
                ),
            )
            rounds = fields["rounds"]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParameterError(f"malformed ledger: {exc}") from exc
        if not isinstance(rounds, list):
            raise InvalidParameterError("malformed ledger: rounds must be a list")
        ledger_id = fields.get("ledger_id")
        if ledger_id is not None:
            if not isinstance(ledger_id, str) or not 1 <= len(ledger_id) <= 128:
                raise InvalidParameterError("malformed ledger: ledger_id must be a short string")
            ledger._ledger_id = ledger_id
        for i, raw in enumerate(rounds):
            if not isinstance(raw, Mapping) or raw.get("round") != i + 1:
                raise InvalidParameterError(
                    f"malformed ledger: round {i + 1} is missing or out of order"
                )
            record = RoundRecord.from_dict({k: v for k, v in raw.items() if k != "round"})
            ledger._append(record, ledger._round_keys(record))
        return ledger

    @classmethod
    def from_json(cls, text: str) -> PrivacyLedger:
        """Parse :meth:`to_json` text; no integrity check (use :meth:`load` for files)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(f"ledger is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        key: bytes | None = None,
        key_path: str | os.PathLike[str] | None = None,
        min_rounds: int | None = None,
        allow_unsigned: bool = False,
    ) -> PrivacyLedger:
        """Read a ledger written by :meth:`save`, checking its MAC first.

        Args:
            path: the ledger file.
            key: the MAC key, if :meth:`save` was given one; otherwise the key file is read.
            key_path: the key file (default ``path + ".key"``). Its ledger id must match
                the ledger's and the ledger must have at least the rounds it records.
            min_rounds: refuse a ledger with fewer rounds (a rollback check for callers
                that keep the key themselves).
            allow_unsigned: read a ledger without an ``"integrity"`` field (written before
                ledgers were signed). Its contents are then **not** protected: anyone who
                could write the file could have lowered the epsilon it yields.

        Raises:
            LedgerIntegrityError: the ledger is unsigned (without ``allow_unsigned``), its
                MAC does not match (it was modified, or signed with another key), its key
                file is missing, unreadable, readable by others or of another ledger, or it
                has fewer rounds than the key file or ``min_rounds`` say.
            InvalidParameterError: the file is not a well-formed ledger.
        """
        document = read_ledger_file(path, key=key, key_path=key_path, allow_unsigned=allow_unsigned)
        ledger = cls.from_dict(document.data)  # raises the precise format/version error
        if document.signed:
            check_not_rolled_back(
                path,
                ledger_id=ledger.ledger_id,
                rounds=len(ledger),
                stored=document.key_record,
                min_rounds=min_rounds,
            )
        return ledger


def curve_rounds(total: int, points: int | None) -> list[int]:
    """``points`` rounds evenly spaced in ``1..total``, always ending at ``total``.

    All rounds if ``points`` is ``None``.
    """
    if points is None or points >= total:
        return list(range(1, total + 1))
    if not is_int(points) or points < 1:
        raise InvalidParameterError("points must be a positive integer")
    if points == 1:
        return [total]
    rounds = {max(1, round(1 + i * (total - 1) / (points - 1))) for i in range(points)}
    return sorted(rounds)
