"""Privacy ledger: granularity, budget enforcement before spending, versioned JSON."""

from __future__ import annotations

import dataclasses
import json
import math

import dp_accounting
import pytest
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant
from opacus.accountants import PRVAccountant, RDPAccountant

from dp.accounting import AccountantKind, NeighboringRelation, compute_epsilon
from dp.events import DistributedDiscreteGaussianDpEvent
from dp.ledger import (
    LEDGER_VERSION,
    BudgetScope,
    ClientSampling,
    LocalDpSgd,
    PrivacyBudget,
    PrivacyLedger,
    RoundRecord,
    SamplingScheme,
    curve_rounds,
    local_dp_sgd_from_opacus,
)
from secagg.errors import BudgetExceededError, InvalidParameterError, UnsupportedEventError

G = dp_accounting.GaussianDpEvent
PS = dp_accounting.PoissonSampledDpEvent
SC = dp_accounting.SelfComposedDpEvent
DISC = 1e-3


def _pld(event: dp_accounting.DpEvent, delta: float = 1e-5) -> float:
    acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=DISC)
    acc.compose(event)
    return float(acc.get_epsilon(delta))


def _round(
    z: float, q: float = 0.1, participants: tuple[str, ...] | None = None, **kw
) -> RoundRecord:  # type: ignore[no-untyped-def]
    return RoundRecord(G(z), ClientSampling(q, population=100), participants=participants, **kw)


def test_population_epsilon_matches_dp_accounting() -> None:
    ledger = PrivacyLedger()
    for _ in range(40):
        ledger.spend(_round(1.5))
    assert ledger.population_epsilon(1e-5) == pytest.approx(
        _pld(SC(PS(0.1, G(1.5)), 40)), rel=1e-12
    )
    # heterogeneous rounds: the noise multiplier changes half-way
    for _ in range(10):
        ledger.spend(_round(3.0, q=0.2))
    expected = _pld(
        dp_accounting.ComposedDpEvent([SC(PS(0.1, G(1.5)), 40), SC(PS(0.2, G(3.0)), 10)])
    )
    assert ledger.population_epsilon(1e-5) == pytest.approx(expected, rel=1e-9)
    assert ledger.population_epsilon(1e-5, upto=40) == pytest.approx(
        _pld(SC(PS(0.1, G(1.5)), 40)), rel=1e-12
    )
    assert ledger.population_delta(1.0) > ledger.population_delta(2.0) > 0


def test_full_participation_rounds_are_not_wrapped_in_sampling() -> None:
    record = RoundRecord(G(2.0), ClientSampling.full())
    assert record.population_event == G(2.0)
    ledger = PrivacyLedger()
    for _ in range(16):
        ledger.spend(record)
    assert ledger.population_epsilon(1e-5) == pytest.approx(_pld(SC(G(2.0), 16)), rel=1e-12)


def test_per_client_epsilon_from_actual_participation() -> None:
    ledger = PrivacyLedger(accountant="rdp")
    schedule = [("a", "b"), ("a",), ("a", "c"), ("b",), ("a",)]
    for cohort in schedule:
        ledger.spend(_round(1.0, participants=cohort))
    eps = ledger.client_epsilons(1e-5)
    assert set(eps) == {"a", "b", "c"}
    for client, rounds in (("a", 4), ("b", 2), ("c", 1)):
        ref = rdp_privacy_accountant.RdpAccountant()
        ref.compose(SC(G(1.0), rounds))
        assert eps[client] == pytest.approx(ref.get_epsilon(1e-5), rel=1e-12)
    # per-client (no amplification) is weaker than the population guarantee
    assert eps["a"] > ledger.population_epsilon(1e-5)
    assert ledger.clients() == ("a", "b", "c")


def test_sample_level_epsilon_from_real_opacus_accountants() -> None:
    ledger = PrivacyLedger(accountant="prv")
    accountants = {"a": PRVAccountant(), "b": PRVAccountant()}
    for rnd in range(3):
        local = {}
        for cid, acc in accountants.items():
            before = acc.state_dict()
            steps = 20 if cid == "a" else 5 * (rnd + 1)
            for _ in range(steps):
                acc.step(noise_multiplier=1.0, sample_rate=0.05)
            local[cid] = local_dp_sgd_from_opacus(acc, since=before)
        ledger.spend(_round(2.0, participants=tuple(accountants), local_dp_sgd=local))
    eps = ledger.sample_level_epsilons(1e-5, accountant="prv")
    for cid, acc in accountants.items():
        assert eps[cid] == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)
    assert eps["a"] > eps["b"]
    # by default the tightest valid accountant: the PLD here, below Opacus' PRV estimate
    tightest = ledger.sample_level_epsilons(1e-5)
    pld = ledger.sample_level_epsilons(1e-5, accountant="pld")
    assert tightest == pld
    assert all(tightest[c] <= eps[c] for c in eps)
    # RDP: same as Opacus' RDP accountant on the same history (orders differ slightly)
    rdp = RDPAccountant()
    rdp.history = list(accountants["a"].history)
    assert ledger.sample_level_epsilons(1e-5, accountant="rdp")["a"] == pytest.approx(
        rdp.get_epsilon(1e-5), rel=0.02
    )


def test_local_dp_sgd_from_opacus_inputs() -> None:
    acc = RDPAccountant()
    for _ in range(3):
        acc.step(noise_multiplier=1.0, sample_rate=0.1)
    snapshot = acc.state_dict()
    acc.step(noise_multiplier=1.0, sample_rate=0.1)
    acc.step(noise_multiplier=2.0, sample_rate=0.1)
    assert local_dp_sgd_from_opacus(acc) == (LocalDpSgd(1.0, 0.1, 4), LocalDpSgd(2.0, 0.1, 1))
    assert local_dp_sgd_from_opacus(acc.state_dict(), since=snapshot) == (
        LocalDpSgd(1.0, 0.1, 1),
        LocalDpSgd(2.0, 0.1, 1),
    )
    assert local_dp_sgd_from_opacus(acc.history, since=acc) == ()
    with pytest.raises(InvalidParameterError):
        local_dp_sgd_from_opacus([(1.0, 0.1)])


def test_population_budget_refuses_the_round_before_noise_is_drawn() -> None:
    budget = PrivacyBudget(epsilon=2.0, delta=1e-5)
    ledger = PrivacyLedger(budgets=[budget])
    noise_draws: list[float] = []

    def run_round(record: RoundRecord) -> None:
        ledger.spend(record)  # check, then commit
        noise_draws.append(1.0)  # stands for the noise the round would draw

    record = _round(1.5, q=0.2)
    rounds = 0
    with pytest.raises(BudgetExceededError, match="population epsilon"):
        while True:
            run_round(record)
            rounds += 1
    assert rounds > 0
    assert len(ledger) == rounds == len(noise_draws)
    assert _pld(SC(PS(0.2, G(1.5)), rounds)) <= 2.0 < _pld(SC(PS(0.2, G(1.5)), rounds + 1))
    # preview says the same without recording
    with pytest.raises(BudgetExceededError):
        ledger.preview(record)
    assert len(ledger) == rounds
    report = ledger.report()
    assert report.round == rounds and not report.exceeded
    assert report.statuses[0].remaining >= 0


def test_preview_does_not_record() -> None:
    ledger = PrivacyLedger(budgets=[PrivacyBudget(10.0, 1e-5)])
    report = ledger.preview(_round(1.0))
    assert len(ledger) == 0 and report.round == 1
    assert report.statuses[0].epsilon == pytest.approx(_pld(PS(0.1, G(1.0))), rel=1e-12)


def test_per_client_budget_names_the_client() -> None:
    ledger = PrivacyLedger(
        budgets=[
            PrivacyBudget(50.0, 1e-5, BudgetScope.POPULATION),
            PrivacyBudget(6.0, 1e-5, BudgetScope.PER_CLIENT),
        ]
    )
    ledger.spend(_round(2.0, participants=("eager", "x")))
    ledger.spend(_round(2.0, participants=("eager", "y")))
    allowed = 2
    while _pld(SC(G(2.0), allowed + 1)) <= 6.0:
        ledger.spend(_round(2.0, participants=("eager",)))
        allowed += 1
    with pytest.raises(BudgetExceededError, match="client eager"):
        ledger.spend(_round(2.0, participants=("eager", "z")))
    assert len(ledger) == allowed
    # other clients can still take part
    ledger.spend(_round(2.0, participants=("z",)))
    with pytest.raises(InvalidParameterError, match="participants"):
        ledger.preview(_round(2.0))


def test_sample_level_budget() -> None:
    ledger = PrivacyLedger(
        budgets=[PrivacyBudget(3.0, 1e-5, BudgetScope.SAMPLE_LEVEL)], accountant="rdp"
    )
    heavy = {"c": (LocalDpSgd(0.8, 0.1, 200),)}
    with pytest.raises(BudgetExceededError, match="sample_level"):
        ledger.spend(_round(2.0, participants=("c",), local_dp_sgd=heavy))
    assert len(ledger) == 0
    ledger.spend(_round(2.0, participants=("c",), local_dp_sgd={"c": (LocalDpSgd(2.0, 0.1, 10),)}))
    assert len(ledger) == 1


def test_distributed_mechanism_is_accounted_by_every_ledger_but_prv() -> None:
    # small scale: the RDP bound is the tighter one, whatever the ledger's accountant
    ddg = DistributedDiscreteGaussianDpEvent(
        l2_sensitivity=40.0, l1_sensitivity=1600.0, local_sigma=15.0, num_clients=10, dimension=4096
    )
    record = RoundRecord(
        ddg, ClientSampling.from_counts(10, 1000), participants=tuple(f"c{i}" for i in range(10))
    )
    expected = compute_epsilon(PS(0.01, ddg), 1e-5, accountant="rdp")
    for kind in (AccountantKind.PLD, AccountantKind.RDP):
        ledger = PrivacyLedger(budgets=[PrivacyBudget(5.0, 1e-5)], accountant=kind)
        ledger.spend(record)
        assert ledger.population_epsilon(1e-5) == pytest.approx(expected, rel=1e-12)
    prv_ledger = PrivacyLedger(accountant=AccountantKind.PRV)
    with pytest.raises(UnsupportedEventError, match="DistributedDiscreteGaussianDpEvent"):
        prv_ledger.spend(record)
    assert len(prv_ledger) == 0


def test_fixed_size_sampling_is_accounted_for_replace_one_neighbours() -> None:
    sampling = ClientSampling.from_counts(10, 1000, SamplingScheme.FIXED_SIZE)
    record = RoundRecord(G(1.0), sampling)
    assert record.population_event == dp_accounting.SampledWithoutReplacementDpEvent(
        1000, 10, G(1.0)
    )
    with pytest.raises(UnsupportedEventError, match="SampledWithoutReplacementDpEvent"):
        PrivacyLedger(accountant="rdp").spend(record)
    ledger = PrivacyLedger(accountant="rdp", neighboring_relation=NeighboringRelation.REPLACE_ONE)
    for _ in range(5):
        ledger.spend(record)
    ref = rdp_privacy_accountant.RdpAccountant(neighboring_relation=NeighboringRelation.REPLACE_ONE)
    ref.compose(SC(record.population_event, 5))
    assert ledger.population_epsilon(1e-5) == pytest.approx(ref.get_epsilon(1e-5), rel=1e-12)


def test_epsilon_curve() -> None:
    ledger = PrivacyLedger()
    for _ in range(30):
        ledger.spend(_round(1.5))
    curve = ledger.epsilon_curve(1e-5, points=5)
    rounds = [t for t, _ in curve]
    assert rounds == curve_rounds(30, 5) and rounds[-1] == 30 and rounds[0] == 1
    eps = [e for _, e in curve]
    assert all(a < b for a, b in zip(eps, eps[1:]))
    assert eps[-1] == ledger.population_epsilon(1e-5)
    rdp_curve = ledger.epsilon_curve(1e-5, accountant="rdp")
    assert [t for t, _ in rdp_curve] == list(range(1, 31))
    assert rdp_curve[-1][1] == pytest.approx(
        ledger.population_epsilon(1e-5, accountant="rdp"), rel=1e-9
    )
    assert rdp_curve[9][1] == pytest.approx(
        ledger.population_epsilon(1e-5, accountant="rdp", upto=10), rel=1e-9
    )
    assert PrivacyLedger().epsilon_curve(1e-5) == []


def test_json_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ddg = DistributedDiscreteGaussianDpEvent(
        l2_sensitivity=40.0, l1_sensitivity=1600.0, local_sigma=15.0, num_clients=10, dimension=4096
    )
    ledger = PrivacyLedger(
        budgets=[PrivacyBudget(20.0, 1e-5), PrivacyBudget(30.0, 1e-6, BudgetScope.PER_CLIENT)],
        accountant="rdp",
    )
    ledger.spend(
        RoundRecord(
            ddg,
            ClientSampling.from_counts(3, 100),
            participants=(1, 2, "x"),
            local_dp_sgd={1: (LocalDpSgd(1.0, 0.1, 7),)},
            note="first",
        )
    )
    ledger.spend(RoundRecord(G(1.0), ClientSampling.full(100), participants=("x",)))
    path = tmp_path / "ledger.json"
    ledger.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == "secagg-fl/privacy-ledger" and data["version"] == LEDGER_VERSION
    assert [r["round"] for r in data["rounds"]] == [1, 2]
    loaded = PrivacyLedger.load(path)
    assert loaded.rounds == ledger.rounds
    assert loaded.budgets == ledger.budgets and loaded.accountant is AccountantKind.RDP
    assert loaded.rounds[0].participants == ("1", "2", "x")
    assert loaded.population_epsilon(1e-5) == ledger.population_epsilon(1e-5)
    assert loaded.client_epsilons(1e-6) == ledger.client_epsilons(1e-6)
    assert loaded.sample_level_epsilons(1e-5) == ledger.sample_level_epsilons(1e-5)
    assert loaded.to_json() == ledger.to_json()


def test_loading_refuses_bad_files() -> None:
    good = PrivacyLedger()
    good.spend(_round(1.0))
    good.spend(_round(1.0))
    data = good.to_dict()
    with pytest.raises(InvalidParameterError, match="version"):
        PrivacyLedger.from_dict({**data, "version": LEDGER_VERSION + 1})
    with pytest.raises(InvalidParameterError, match="format"):
        PrivacyLedger.from_dict({**data, "format": "something-else"})
    swapped = {**data, "rounds": [data["rounds"][1], data["rounds"][0]]}
    with pytest.raises(InvalidParameterError, match="out of order"):
        PrivacyLedger.from_dict(swapped)
    bad_event = json.loads(json.dumps(data))
    bad_event["rounds"][0]["mechanism"] = {"@type": "builtins.eval"}
    with pytest.raises(InvalidParameterError, match="unknown event type"):
        PrivacyLedger.from_dict(bad_event)
    with pytest.raises(InvalidParameterError, match="JSON"):
        PrivacyLedger.from_json("{not json")


def test_entries_are_immutable() -> None:
    record = _round(1.0, participants=["a"], local_dp_sgd={"a": [LocalDpSgd(1.0, 0.1, 3)]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.note = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        record.local_dp_sgd["b"] = ()  # type: ignore[index]
    assert record.participants == ("a",) and record.local_dp_sgd["a"] == (LocalDpSgd(1.0, 0.1, 3),)
    ledger = PrivacyLedger()
    ledger.spend(record)
    assert isinstance(ledger.rounds, tuple)


@pytest.mark.parametrize(
    "make",
    [
        lambda: PrivacyBudget(0.0, 1e-5),
        lambda: PrivacyBudget(1.0, 1.0),
        lambda: PrivacyBudget(math.inf, 1e-5),
        lambda: ClientSampling(0.0),
        lambda: ClientSampling(1.5),
        lambda: ClientSampling(0.5, scheme=SamplingScheme.FIXED_SIZE),
        lambda: ClientSampling.from_counts(11, 10),
        lambda: LocalDpSgd(-1.0, 0.1, 1),
        lambda: LocalDpSgd(1.0, 0.1, -1),
        lambda: RoundRecord("gaussian", ClientSampling(0.1)),  # type: ignore[arg-type]
        lambda: RoundRecord(G(1.0), ClientSampling(0.1), participants=("a", "a")),
        lambda: RoundRecord(G(1.0), ClientSampling(0.1), participants="ab"),
        lambda: RoundRecord(G(1.0), ClientSampling(0.1), participants=(1.5,)),  # type: ignore[arg-type]
        lambda: RoundRecord(G(math.nan), ClientSampling(0.1)),
        lambda: PrivacyLedger(accountant="moments"),
        lambda: PrivacyLedger(budgets=[1.0]),  # type: ignore[list-item]
    ],
)
def test_invalid_input_is_refused(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameterError):
        make()


def test_invalid_round_leaves_ledger_unchanged() -> None:
    ledger = PrivacyLedger()
    ledger.spend(_round(1.0))
    with pytest.raises(InvalidParameterError):
        ledger.spend("round")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError):
        ledger.population_epsilon(1e-5, upto=5)
    assert len(ledger) == 1


def test_worst_client_epsilon_is_the_unamplified_maximum() -> None:
    ledger = PrivacyLedger()
    sampling = ClientSampling.from_counts(2, 100)
    for cohort in [("a", "b"), ("a",), ("a", "c")]:
        ledger.spend(RoundRecord(G(1.0), sampling, participants=cohort))
    clients = ledger.client_epsilons(1e-5)
    assert ledger.worst_client_epsilon(1e-5) == max(clients.values()) == clients["a"]
    # holds against a server that picks the cohort: far above the amplified figure
    assert ledger.worst_client_epsilon(1e-5) > 3 * ledger.population_epsilon(1e-5)
    assert (
        ledger.worst_client_epsilon(1e-5, accountant="rdp")
        == ledger.client_epsilons(1e-5, accountant="rdp")["a"]
    )
    # a round without a participant list counts against every client
    ledger.spend(RoundRecord(G(1.0), sampling, participants=None))
    assert ledger.worst_client_epsilon(1e-5) == pytest.approx(
        compute_epsilon(SC(G(1.0), 4), 1e-5), rel=1e-12
    )
    assert PrivacyLedger().worst_client_epsilon(1e-5) == 0.0


def test_sample_level_default_is_the_tightest_valid_accountant() -> None:
    ledger = PrivacyLedger(accountant="rdp")
    steps = {"a": [LocalDpSgd(1.0, 0.05, 200)]}
    for _ in range(3):
        ledger.spend(_round(2.0, participants=("a",), local_dp_sgd=steps))
    event = SC(PS(0.05, G(1.0)), 600)
    pld, rdp = compute_epsilon(event, 1e-5), compute_epsilon(event, 1e-5, accountant="rdp")
    assert pld < rdp
    assert ledger.sample_level_epsilons(1e-5)["a"] == pytest.approx(pld, rel=1e-12)
    assert ledger.sample_level_epsilons(1e-5, accountant="rdp")["a"] == pytest.approx(
        rdp, rel=1e-12
    )
