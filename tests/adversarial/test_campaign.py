"""A seeded campaign of rounds with random dropouts at every stage.

For every variant -- SecAgg and SecAgg+ against each server class, and Paillier with a
small (INSECURE, 512-bit) test key -- :data:`ROUNDS` rounds of small cohorts (5 to 9
clients, 2 to 8 dimensions) run with real cryptography. A numpy generator seeded per
variant and round chooses only the simulation: the cohort, the ring, the threat model's
dropout rate, whether messages go through the wire format, and which clients vanish at
which stage -- before handling the stage's request, or after it, with their reply lost --
often enough to make the round fail.

The variants run side by side in worker processes (one per core), each timed on its own.

Every round must end in exactly one of two ways:

* the exact sum of the reported survivors' inputs (ring elements compared exactly; for
  Paillier rounds on off-grid floats, the decoded sum within the quantisation bound), where
  the survivors are exactly the clients that had not vanished by the input stage, and at
  least ``min_aggregate_size`` of them;
* a typed abort (a :class:`~secagg.errors.SecAggError`).

A wrong sum, a wrong survivor set, an abort without any dropout, or any other exception is
recorded with the variant, seed and round index that reproduce its choices
(:func:`masking_round`, :func:`paillier_round`); the test fails listing them. Each test
also asserts that its variant saw both outcomes, and prints the counts and the time taken.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from protocols import Stage, round_stages, setup_round
from protocols.paillier import setup_paillier_round
from secagg.errors import RoundRestartError, SecAggError
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.prg import PrgAlgorithm
from secagg.primitives.threshold_paillier import KeyShare, ThresholdPublicKey, deal_threshold_key
from threat_models import ServerClass, ThreatModel
from threat_models.paillier import PaillierParameters, paillier_parameters
from threat_models.parameters import GraphKind, select_parameters

ROUNDS = 1000
WIRE_FRACTION = 0.2
MASKING_BITS = (8, 16, 31, 32, 33, 48, 64)
PAILLIER_BITS = (16, 24, 32, 40)
DROPOUT_FRACTIONS = (0.1, 0.2, 0.3)
U64 = npt.NDArray[np.uint64]

MASKING_VARIANTS = [
    (protocol, server) for protocol in ("secagg", "secagg+") for server in ServerClass
]
SEEDS = {
    f"{protocol}-{server.value}": 1000 + 17 * i
    for i, (protocol, server) in enumerate(MASKING_VARIANTS)
}
SEEDS["paillier"] = 2026


@dataclasses.dataclass
class Outcome:
    """How one round ended."""

    success: bool = False
    abort: str = ""
    restarts: int = 0
    failure: str = ""
    dropouts: tuple[str, ...] = ()
    """``"<stage>/vanish"`` or ``"<stage>/lost"`` per client that dropped."""


@dataclasses.dataclass
class Tally:
    """The outcomes of one variant's campaign."""

    name: str
    successes: int = 0
    restarted: int = 0
    aborts: Counter[str] = dataclasses.field(default_factory=Counter)
    failures: list[str] = dataclasses.field(default_factory=list)
    dropouts: Counter[str] = dataclasses.field(default_factory=Counter)
    wall: float = 0.0
    cpu: float = 0.0
    done_after: float = 0.0

    def add(self, outcome: Outcome) -> None:
        self.dropouts.update(outcome.dropouts)
        self.restarted += bool(outcome.restarts)
        if outcome.failure:
            self.failures.append(outcome.failure)
        elif outcome.success:
            self.successes += 1
        else:
            self.aborts[outcome.abort] += 1

    @property
    def rounds(self) -> int:
        return self.successes + sum(self.aborts.values()) + len(self.failures)

    def summary(self) -> str:
        aborts = ", ".join(f"{name} {count}" for name, count in sorted(self.aborts.items()))
        return (
            f"{self.name}: {self.rounds} rounds in {self.wall:.1f} s wall ({self.cpu:.1f} s CPU; "
            f"done {self.done_after:.1f} s after the campaign started): "
            f"{self.successes} exact sums ({self.restarted} after a restart), "
            f"{sum(self.aborts.values())} typed aborts ({aborts}), {len(self.failures)} failures; "
            f"dropouts: {dict(sorted(self.dropouts.items()))}"
        )


def _round_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def _choose_dropouts(
    rng: np.random.Generator, ids: Sequence[int], stages: Sequence[Stage], lossy: Sequence[Stage]
) -> tuple[dict[Stage, set[int]], dict[Stage, set[int]]]:
    """``(vanish, lost)``: stage -> clients that vanish before handling its request, and
    stage -> clients that handle it but whose reply is lost (they vanish after it)."""
    vanish: dict[Stage, set[int]] = {}
    lost: dict[Stage, set[int]] = {}
    if rng.random() < 0.25:
        return vanish, lost
    n = len(ids)
    count = min(n - 1, int(rng.geometric(0.45)))
    for cid in rng.choice(np.asarray(ids), size=count, replace=False).tolist():
        stage = stages[int(rng.integers(len(stages)))]
        if stage in lossy and rng.random() < 0.35:
            lost.setdefault(stage, set()).add(int(cid))
        else:
            vanish.setdefault(stage, set()).add(int(cid))
    return vanish, lost


def _labels(vanish: Mapping[Stage, set[int]], lost: Mapping[Stage, set[int]]) -> tuple[str, ...]:
    return tuple(f"{s.value}/vanish" for s, v in vanish.items() for _ in v) + tuple(
        f"{s.value}/lost" for s, v in lost.items() for _ in v
    )


def _drive(runner: Any, lost: Mapping[Stage, set[int]]) -> None:
    """Run every stage; the replies of ``lost[stage]`` never reach the server."""
    while not runner.finished:
        stage = runner.stage
        runner.deliver_requests()
        for cid in sorted(lost.get(stage, ())):
            if cid in runner.outbox:
                del runner.outbox[cid]
                runner.dead.add(cid)
        runner.deliver_replies()
        runner.close()


def _failure(variant: str, seed: int, index: int, what: str) -> str:
    return f"{variant} seed={seed} round={index}: {what}"


# ---------------------------------------------------------------------------- masking


@cache
def _feasible(n: int, threat: ThreatModel, graph: GraphKind) -> bool:
    try:
        select_parameters(n, threat, graph=graph)
    except SecAggError:
        return False
    return True


def masking_round(protocol: str, server: ServerClass, seed: int, index: int) -> Outcome:
    """Round ``index`` of the ``(protocol, server)`` campaign (its choices depend only on
    ``seed`` and ``index``)."""
    variant = f"{protocol}-{server.value}"
    rng = _round_rng(seed, index)
    n = int(rng.integers(5, 10))
    d = int(rng.integers(2, 9))
    bits = int(rng.choice(MASKING_BITS))
    graph = GraphKind.COMPLETE if protocol == "secagg" else GraphKind.HARARY
    threat = ThreatModel(server=server, dropout_fraction=float(rng.choice(DROPOUT_FRACTIONS)))
    if not _feasible(n, threat, graph):
        threat = ThreatModel(server=server)
    wire = bool(rng.random() < WIRE_FRACTION)
    prg = PrgAlgorithm.CHACHA20 if rng.random() < 0.3 else PrgAlgorithm.AES_256_CTR
    ids = list(range(1, n + 1))
    high = np.uint64(2**bits - 1)
    inputs = {cid: rng.integers(0, high, d, dtype=np.uint64, endpoint=True) for cid in ids}
    stages = list(round_stages(server))
    vanish, lost = _choose_dropouts(rng, ids, stages, stages)
    cutoff = Stage.MASKED_INPUT.position
    outcome = Outcome(dropouts=_labels(vanish, lost))
    excluded: set[int] = set()
    try:
        while True:
            live = [c for c in ids if c not in excluded]
            # a restarted round is a new execution (fresh round id), without the graph-seed dropouts
            skip = Stage.GRAPH_SEED if outcome.restarts else None
            runner = setup_round(
                {c: inputs[c] for c in live},
                bits=bits,
                protocol=protocol,
                threat_model=threat,
                dropouts={
                    s.value: sorted(v - excluded)
                    for s, v in vanish.items()
                    if s is not skip and v - excluded
                },
                wire=wire,
                record_view=False,
                prg=prg,
            )
            try:
                _drive(runner, {s: v - excluded for s, v in lost.items() if s is not skip})
                break
            except RoundRestartError as exc:
                expected_missing = (
                    vanish.get(Stage.GRAPH_SEED, set()) | lost.get(Stage.GRAPH_SEED, set())
                ) - excluded
                if set(exc.excluded) != expected_missing or not exc.excluded or outcome.restarts:
                    outcome.failure = _failure(
                        variant,
                        seed,
                        index,
                        f"restart excluded {sorted(exc.excluded)}, expected "
                        f"{sorted(expected_missing)}",
                    )
                    return outcome
                excluded |= exc.excluded
                outcome.restarts += 1
    except SecAggError as exc:
        if not vanish and not lost:
            outcome.failure = _failure(
                variant, seed, index, f"aborted without any dropout: {exc!r}"
            )
        else:
            outcome.abort = type(exc).__name__
        return outcome
    except Exception:  # noqa: BLE001 - any other exception is what the campaign hunts for
        outcome.failure = _failure(
            variant, seed, index, "untyped exception\n" + traceback.format_exc(limit=6)
        )
        return outcome
    result = runner.server.result
    gone = excluded | {
        c for s, v in (*vanish.items(), *lost.items()) if s.position <= cutoff for c in v
    }
    expected = tuple(c for c in ids if c not in gone)
    total = np.sum([inputs[c] for c in result.survivors], axis=0, dtype=np.uint64) & high
    problems = []
    if tuple(result.survivors) != expected:
        problems.append(f"survivors {result.survivors}, expected {expected}")
    if not np.array_equal(np.asarray(result.ring_sum, dtype=np.uint64), total):
        problems.append("the ring sum is not the sum of the survivors' inputs")
    if len(result.survivors) < runner.server.config.parameters.min_aggregate_size:
        problems.append(f"{len(result.survivors)} survivors, below min_aggregate_size")
    if problems:
        outcome.failure = _failure(variant, seed, index, "; ".join(problems))
    else:
        outcome.success = True
    return outcome


# ---------------------------------------------------------------------------- Paillier


@cache
def _key(n_decryptors: int, threshold: int) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
    return deal_threshold_key(
        n_decryptors=n_decryptors, threshold=threshold, key_bits=512, hazmat_allow_weak_key=True
    )


def _paillier_head(
    rng: np.random.Generator,
) -> tuple[int, int, int, int | None, ThreatModel, PaillierParameters]:
    """The first choices of a Paillier round:
    ``n, d, bits, committee, threat model, parameters``."""
    n = int(rng.integers(5, 10))
    d = int(rng.integers(2, 9))
    bits = int(rng.choice(PAILLIER_BITS))
    committee = int(rng.integers(5, 8)) if rng.random() < 0.3 else None
    threat = ThreatModel(dropout_fraction=float(rng.choice(DROPOUT_FRACTIONS)))
    try:
        params = paillier_parameters(n, threat, n_decryptors=committee, max_clients=n)
    except SecAggError:
        threat = ThreatModel()
        params = paillier_parameters(n, threat, n_decryptors=committee, max_clients=n)
    return n, d, bits, committee, threat, params


def paillier_round(seed: int, index: int) -> Outcome:
    """Round ``index`` of the Paillier campaign (malicious server, clients as decryptors or a
    separate committee; choices depend only on ``seed`` and ``index``)."""
    variant = "paillier"
    rng = _round_rng(seed, index)
    n, d, bits, committee, threat, params = _paillier_head(rng)
    wire = bool(rng.random() < WIRE_FRACTION)
    on_grid = bool(rng.random() < 0.5)
    # a power-of-two number of levels: grid points encode exactly (stochastic rounding is moot)
    levels = 1 << (bits - math.ceil(math.log2(n + 1)) - 1)
    encoder = FixedPointEncoder.symmetric(1.0, bits=bits, max_clients=n, levels=levels)
    ids = list(range(1, n + 1))
    if on_grid:
        steps = {cid: rng.integers(0, levels, d, endpoint=True) for cid in ids}
        updates = {cid: -1.0 + steps[cid] * encoder.quantum for cid in ids}
    else:
        updates = {cid: rng.uniform(-1.0, 1.0, d) for cid in ids}
    stages = list(Stage)
    # lost replies: nonces and uploads (lazy decryption hands each partial to the server as
    # it is made, so there is no reply left to lose at unmasking)
    lossy = [Stage.ADVERTISE_KEYS, Stage.MASKED_INPUT]
    vanish, lost = _choose_dropouts(rng, ids, stages, lossy)
    gone_committee: tuple[int, ...] = ()
    if committee is not None and rng.random() < 0.5:
        size = int(rng.integers(1, committee))
        gone_committee = tuple(
            sorted(rng.choice(np.arange(1, committee + 1), size=size, replace=False).tolist())
        )
    # a committee member's reply can be lost too (its party id follows the clients')
    if committee is not None and rng.random() < 0.2:
        member = n + int(rng.integers(1, committee + 1))
        if member - n not in gone_committee:
            lost.setdefault(lossy[int(rng.integers(len(lossy)))], set()).add(member)
    outcome = Outcome(
        dropouts=_labels(vanish, lost) + ("unmasking/committee",) * len(gone_committee)
    )
    try:
        setup = setup_paillier_round(
            updates,
            dropouts={s.value: sorted(v) for s, v in vanish.items()},
            seed=int(rng.integers(2**32)),
            threat_model=threat,
            encoder=encoder,
            wire=wire,
            record_view=False,
            key=_key(params.n_decryptors, params.threshold),
            committee_size=committee,
            decryptor_dropouts=gone_committee,
            lazy_decryption=True,
        )
        runner = setup.runner
        _drive(runner, lost)
    except SecAggError as exc:
        if not vanish and not lost and not gone_committee:
            outcome.failure = _failure(
                variant, seed, index, f"aborted without any dropout: {exc!r}"
            )
        else:
            outcome.abort = type(exc).__name__
        return outcome
    except Exception:  # noqa: BLE001 - any other exception is what the campaign hunts for
        outcome.failure = _failure(
            variant, seed, index, "untyped exception\n" + traceback.format_exc(limit=6)
        )
        return outcome
    result = runner.server.result
    early = {s for s in Stage if s.position <= Stage.MASKED_INPUT.position}
    gone = {c for s, v in vanish.items() if s in early for c in v}
    gone |= lost.get(Stage.MASKED_INPUT, set())
    if committee is None:  # a client's lost nonce: it is dead from then on
        gone |= lost.get(Stage.ADVERTISE_KEYS, set())
    expected = tuple(c for c in ids if c not in gone)
    problems = []
    if tuple(result.survivors) != expected:
        problems.append(f"survivors {result.survivors}, expected {expected}")
    if on_grid:
        total = np.sum([steps[c] for c in result.survivors], axis=0).astype(np.uint64)
        if not np.array_equal(np.asarray(result.ring_sum, dtype=np.uint64), total):
            problems.append("the ring sum is not the sum of the survivors' encoded inputs")
    true_sum = np.sum([updates[c] for c in result.survivors], axis=0)
    bound = len(result.survivors) * encoder.quantum * (1 + 1e-9) + 1e-12
    err = float(np.max(np.abs(np.asarray(result.aggregate) - true_sum)))
    if err > bound:
        problems.append(f"decoded sum off by {err}, bound {bound}")
    if len(result.survivors) < runner.config.min_aggregate_size:
        problems.append(f"{len(result.survivors)} contributors, below min_aggregate_size")
    if problems:
        outcome.failure = _failure(variant, seed, index, "; ".join(problems))
    else:
        outcome.success = True
    return outcome


# ---------------------------------------------------------------------------- the campaign


def _order(name: str, seed: int) -> list[int]:
    """The order to play the rounds in (any order gives the same choices). Paillier rounds are
    grouped by key: encryptors cache the fixed-base table of the last keys only."""
    if name != "paillier":
        return list(range(ROUNDS))

    def key(index: int) -> tuple[int, int]:
        params = _paillier_head(_round_rng(seed, index))[-1]
        return params.n_decryptors, params.threshold

    return sorted(range(ROUNDS), key=key)


def run_campaign(name: str, started: float) -> Tally:
    """Play every round of variant ``name`` (``"paillier"`` or ``"<protocol>-<server>"``)."""
    seed = SEEDS[name]
    if name == "paillier":
        play = paillier_round
    else:
        protocol, server = name.rsplit("-", 1)

        def play(seed: int, index: int) -> Outcome:
            return masking_round(protocol, ServerClass(server), seed, index)

    tally = Tally(name)
    wall, cpu = time.perf_counter(), time.process_time()
    for index in _order(name, seed):
        tally.add(play(seed, index))
    tally.wall, tally.cpu = time.perf_counter() - wall, time.process_time() - cpu
    tally.done_after = time.time() - started
    return tally


# longest first, so that the workers finish together
CAMPAIGNS = ["paillier"] + [
    f"{p}-{s.value}" for s in reversed(ServerClass) for p in ("secagg", "secagg+")
]


def _selected(session: pytest.Session) -> list[str]:
    wanted = set()
    for item in session.items:
        module = getattr(item, "module", None)
        if module is None or module.__name__ != __name__:
            continue
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            wanted.add("paillier")
        else:
            wanted.add(f"{callspec.params['protocol']}-{callspec.params['server'].value}")
    return [name for name in CAMPAIGNS if name in wanted]


@pytest.fixture(scope="module")
def campaigns(request: pytest.FixtureRequest) -> Iterator[dict[str, Future[Tally]]]:
    """Every selected variant's campaign, started at once in a pool of one worker per core."""
    names = _selected(request.session)
    workers = max(1, min(len(names), os.cpu_count() or 1))
    started = time.time()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield {name: pool.submit(run_campaign, name, started) for name in names}


# what an honest round may abort for: too few parties left (RoundRestartError, its subclass,
# is handled by restarting), or too few left for any parameters after a restart
LACK_OF_PARTIES = {"ThresholdNotMetError", "InfeasibleThreatModelError"}


def _check(tally: Tally, stages: Sequence[Stage]) -> None:
    print(tally.summary())
    assert not tally.failures, tally.summary() + "\n" + "\n".join(tally.failures[:10])
    assert tally.rounds == ROUNDS
    assert tally.successes > 0, f"no round succeeded: {tally.summary()}"
    assert sum(tally.aborts.values()) > 0, f"no round aborted: {tally.summary()}"
    assert set(tally.aborts) <= LACK_OF_PARTIES, (
        f"an honest round aborted for another reason: {tally.summary()}"
    )
    for stage in stages:
        assert tally.dropouts[f"{stage.value}/vanish"] > 0, (
            f"no dropout at {stage.value}: {tally.summary()}"
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("protocol", "server"), MASKING_VARIANTS, ids=[f"{p}-{s.value}" for p, s in MASKING_VARIANTS]
)
def test_masking_campaign(
    campaigns: dict[str, Future[Tally]], protocol: str, server: ServerClass
) -> None:
    _check(campaigns[f"{protocol}-{server.value}"].result(), round_stages(server))


@pytest.mark.slow
def test_paillier_campaign(campaigns: dict[str, Future[Tally]]) -> None:
    _check(campaigns["paillier"].result(), list(Stage))
