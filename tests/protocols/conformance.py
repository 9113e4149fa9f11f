"""Conformance suite that every secure aggregation protocol variant must pass.

Use it like dp_accounting's accountant test base: subclass :class:`ProtocolConformance`
in a ``test_*.py`` module with a class name starting with ``Test`` and fill in the hooks::

    from conformance import ProtocolConformance

    class TestMyProtocol(ProtocolConformance):
        protocol = "myproto"
        def open_round(self, updates, *, round_id, dropouts=None): ...
        ...

What the suite checks (each test loops over the protocol's stages):

* honest run: the aggregate is the sum of all inputs;
* a dropout at each stage is survived; a client that vanishes at or before the stage
  where inputs are uploaded (:meth:`input_stage`) is left out of the sum, later ones
  are in it;
* too few survivors at each stage: the round aborts with
  :class:`~secagg.errors.ThresholdNotMetError` and no client revealed anything;
* malformed (raw-byte and semantic), replayed and cross-round messages at each stage,
  towards the server and towards a client, raise a typed
  :class:`~secagg.errors.SecAggError` and change nothing: the round then completes with
  the right sum;
* a server listing a client both as dropped and surviving is refused;
* masked inputs in the server's view are uniform (chi-square, alpha = 1e-6);
* a scripted server that pads the survivor (contributor) list with ids that contributed
  nothing, so that the list reaches ``min_aggregate_size`` while fewer real inputs are in,
  is refused by every party it asks and gets no sum (with a weakened configuration as the
  positive control);
* a second execution of a round id, by the same identities with the same round logs and
  after a restart over the same log file, is refused with
  :class:`~secagg.errors.ReplayError` before anything bound to the round is released;
* one client whose signature (attestation, proof, reveal) is random bytes counts as
  dropped for the honest server: the round completes with the exact sum of the others (or
  with its input, when only a signature made after its input was accepted is bad).

A variant that does not claim one of the last three properties says so in a class
attribute (:attr:`~ProtocolConformance.padding_non_claim`,
:attr:`~ProtocolConformance.default_log_non_claim`,
:attr:`~ProtocolConformance.bad_client_non_claim`): the test then asserts the documented
non-claim or is skipped with that reason.

Protocol-specific behaviour lives in the hooks below, each documented. The round object
returned by :meth:`open_round` must offer the stepping interface of
:class:`protocols.masking.driver.RoundRunner`: ``stages``, ``stage``, ``pending``,
``requests``, ``outbox``, ``replies``, ``server_view``, ``deliver_requests()``,
``deliver_replies()``, ``collect()``, ``close()``, ``step()``, ``run_until(stage)``,
``send_to_server(msg | bytes)``, ``send_to_client(cid, msg | bytes)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

import secagg.errors
from protocols import RoundLog, Stage, simulate
from secagg.errors import (
    AlreadyFinalizedError,
    ProtocolAbortError,
    ReplayError,
    RoundRestartError,
    SecAggError,
    StageError,
    ThresholdNotMetError,
)

__all__ = [
    "ProtocolConformance",
    "PaddingOutcome",
    "BadClientCase",
    "chi_square_uniform_pvalue",
    "is_typed_error",
]

UNIFORMITY_ALPHA = 1e-6


def chi_square_uniform_pvalue(words: npt.NDArray[np.uint64], bits: int, *, nbits: int = 4) -> float:
    """Smallest p-value of chi-square tests of the top and bottom ``nbits`` bits."""
    values = np.asarray(words, dtype=np.uint64)
    top = (values >> np.uint64(bits - nbits)) & np.uint64((1 << nbits) - 1)
    low = values & np.uint64((1 << nbits) - 1)
    pvalues = []
    for part in (top, low):
        counts = np.bincount(part.astype(np.int64), minlength=1 << nbits)
        pvalues.append(float(stats.chisquare(counts).pvalue))
    return min(pvalues)


def is_typed_error(name: str) -> bool:
    """Whether ``name`` names a :class:`~secagg.errors.SecAggError` subclass."""
    cls = getattr(secagg.errors, name, None)
    return isinstance(cls, type) and issubclass(cls, SecAggError)


@dataclass(frozen=True)
class PaddingOutcome:
    """What a scripted server got out of a padded survivor (contributor) list.

    Attributes:
        real: the parties whose inputs are genuinely in the server's aggregate.
        listed: the padded list the server showed (``real`` plus ids that contributed nothing).
        min_aggregate_size: the round's minimum aggregate size.
        total: the sum the server computed from what the parties released (``None``: none).
        expected: the exact sum of the ``real`` inputs.
        tolerance: allowed absolute error of ``total`` (0: ring elements compared exactly).
        asked: the parties the server asked to act on the padded list.
        refusals: party -> name of the (last) error it raised.
        released: how many secret-bearing items (shares, partial decryptions) were released.
    """

    real: tuple[int, ...]
    listed: tuple[int, ...]
    min_aggregate_size: int
    total: npt.NDArray[Any] | None
    expected: npt.NDArray[Any]
    tolerance: float
    asked: tuple[int, ...]
    refusals: Mapping[int, str]
    released: int

    def server_got_the_small_sum(self) -> bool:
        """Whether ``total`` is the sum of the ``real`` inputs."""
        if self.total is None:
            return False
        if self.tolerance == 0:
            return bool(np.array_equal(self.total, self.expected))
        err = np.max(np.abs(np.asarray(self.total, dtype=np.float64) - self.expected))
        return bool(err <= self.tolerance)


@dataclass(frozen=True)
class BadClientCase:
    """One client (or decryptor) that puts random bytes in one field of one reply.

    Attributes:
        stage: the stage whose reply is corrupted.
        what: which field (passed to :meth:`ProtocolConformance.corrupt`).
        party: the misbehaving party.
        in_sum: whether its input must still be in the aggregate (only a signature made
            after its input was accepted failed).
    """

    stage: Stage
    what: str
    party: int
    in_sum: bool


class _Corrupting:
    """A misbehaving party: the real one, whose replies at ``stage`` go through ``corrupt``."""

    def __init__(
        self, round_: Any, party: Any, case: BadClientCase, corrupt: Callable[[Any, str], Any]
    ) -> None:
        self._round, self._party, self._case, self._corrupt = round_, party, case, corrupt

    def handle(self, message: Any) -> list[Any]:
        out = self._party.handle(message)
        if self._round.stage is not self._case.stage:
            return list(out)
        return [self._corrupt(m, self._case.what) for m in out]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._party, name)


class ProtocolConformance:
    """Abstract base: hooks to override are marked *hook*; tests are ``test_*``."""

    protocol: ClassVar[str] = ""
    num_clients: ClassVar[int] = 8
    dimension: ClassVar[int] = 24
    attack_dimension: ClassVar[int] = 4
    """Update length in the lying-server tests (padding, round reuse, bad client)."""

    padding_non_claim: ClassVar[str] = ""
    """Non-empty: why the variant makes no claim against a padded survivor list (the test then
    asserts that the attack succeeds, as documented)."""
    default_log_non_claim: ClassVar[str] = ""
    """Non-empty: why a party with its *default* round log does not refuse a second execution
    (the test then asserts that it answers, as documented)."""
    bad_client_non_claim: ClassVar[str] = ""
    """Non-empty: why the bad-client test does not apply (it is skipped with this reason)."""

    # ------------------------------------------------------------------ hooks

    def config(self) -> dict[str, Any]:
        """*hook*: extra keyword options for ``protocols.simulate`` (threat model, ...)."""
        return {}

    def client_ids(self) -> list[int]:
        """*hook*: the cohort (default ``1..num_clients``)."""
        return list(range(1, self.num_clients + 1))

    def make_updates(self, *, constant: float | None = None) -> dict[int, npt.NDArray[np.float64]]:
        """*hook*: one float vector per client (fixed seed: the data, never the crypto)."""
        rng = np.random.default_rng(1234)
        out = {}
        for cid in self.client_ids():
            if constant is None:
                out[cid] = rng.uniform(-1.0, 1.0, self.dimension)
            else:
                out[cid] = np.full(self.dimension, constant)
        return out

    def tolerance(self, n: int) -> float:
        """*hook*: allowed absolute error of a decoded sum of ``n`` inputs."""
        return 1e-5 * max(n, 1)

    def stages(self) -> Sequence[Stage]:
        """*hook*: the stages of a round, in order."""
        raise NotImplementedError

    def input_stage(self) -> Stage:
        """*hook*: the stage at which clients upload their (masked / encrypted) inputs."""
        return Stage.MASKED_INPUT

    def dropout_victims(self, stage: Stage) -> list[int]:
        """*hook*: clients that vanish at ``stage`` in the dropout test (must be survivable)."""
        return [self.client_ids()[1]]

    def fatal_dropouts(self, stage: Stage) -> list[int]:
        """*hook*: clients whose loss at ``stage`` must abort the round (default: all but one)."""
        return self.client_ids()[1:]

    def open_round(
        self,
        updates: Mapping[int, npt.ArrayLike],
        *,
        round_id: int,
        dropouts: Mapping[str, Iterable[int]] | None = None,
    ) -> Any:
        """*hook*: a stepped round (see module docstring) over ``updates``."""
        raise NotImplementedError

    def finish(self, round_: Any) -> tuple[npt.NDArray[np.float64], tuple[int, ...]]:
        """*hook*: run ``round_`` to the end; return (decoded aggregate, survivors)."""
        raise NotImplementedError

    def malformed_variants(self, message: Any) -> list[Any]:
        """*hook*: malformed versions of ``message`` (objects or bytes) its receiver must refuse.

        Default: raw-byte corruptions (truncation, bad magic, unknown version, unknown
        type, trailing byte) of the wire encoding, via :meth:`encode`.
        """
        data = self.encode(message)
        return [
            data[:-1],
            b"XX" + data[2:],
            data[:2] + bytes([data[2] ^ 0x7F]) + data[3:],
            data[:3] + bytes([0xEE]) + data[4:],
            data + b"\x00",
        ]

    def encode(self, message: Any) -> bytes:
        """*hook*: the wire encoding of a message."""
        from protocols import encode_message

        return encode_message(message)

    def reveals_secrets(self, message: Any) -> bool:
        """*hook*: whether a client message discloses key material (e.g. unmasking shares)."""
        return False

    def forge_both_listed(self, round_: Any) -> tuple[int, Any]:
        """*hook*: at the unmasking stage (requests pending), a forged request to some client
        that lists one of its peers both as dropped and as surviving. Return (client, request)."""
        pytest.skip(f"{self.protocol}: no survivor lists to forge")

    def masked_payloads(
        self, server_view: Sequence[Any]
    ) -> list[tuple[npt.NDArray[np.uint64], int]]:
        """*hook*: the masked inputs in a server view, as (ring elements, bits)."""
        pytest.skip(f"{self.protocol}: no ring-valued masked inputs")

    def padding_attack(self, *, weakened: bool) -> PaddingOutcome:
        """*hook*: a scripted server pads the survivor (contributor) list with ids that
        contributed nothing, so that it reaches ``min_aggregate_size`` while fewer real inputs
        are in, and tries to compute their sum. ``weakened``: against the configuration of the
        positive control (a check switched off), where the server must get that sum."""
        pytest.skip(f"{self.protocol}: no padding attack scripted")

    def logged_parties(self) -> list[int]:
        """*hook*: the parties that keep a round log (default: the clients)."""
        return self.client_ids()

    def open_logged_round(
        self,
        updates: Mapping[int, npt.ArrayLike],
        *,
        round_id: int,
        logs: Mapping[int, RoundLog] | None,
        like: Any = None,
    ) -> Any:
        """*hook*: a stepped round whose parties record their rounds in ``logs`` (``None``:
        their default logs). ``like``: an earlier round of the same id whose identities (and
        keys) the parties reuse -- a second execution of that round."""
        raise NotImplementedError

    def first_messages(self, round_: Any, earlier: Any) -> dict[int, Any]:
        """*hook*: party -> the first message it gets in ``round_`` (a second execution of
        ``earlier``). Default: the pending requests."""
        return dict(round_.pending)

    def released_nothing(self, round_: Any, party: int) -> bool:
        """*hook*: whether ``party`` of ``round_`` is still as it was before its first message."""
        return True

    def bad_client_cases(self) -> Sequence[BadClientCase]:
        """*hook*: the misbehaving parties to try, one per round."""
        return []

    def corrupt(self, message: Any, what: str) -> Any:
        """*hook*: ``message`` with random bytes in field ``what`` (other messages unchanged)."""
        return message

    def refused_by_server(self, round_: Any) -> set[int]:
        """*hook*: the parties whose replies the honest server refused in ``round_``."""
        return set(round_.refused)

    # ------------------------------------------------------------------ helpers

    def _attack_updates(self) -> dict[int, npt.NDArray[np.float64]]:
        return {c: v[: self.attack_dimension] for c, v in self.make_updates().items()}

    def _simulate(self, updates: Mapping[int, Any], **kwargs: Any) -> Any:
        return simulate(updates, protocol=self.protocol, **{**self.config(), **kwargs})

    def _expected(
        self, updates: Mapping[int, npt.NDArray[np.float64]], survivors: Iterable[int]
    ) -> npt.NDArray[np.float64]:
        return np.asarray(np.sum([updates[c] for c in survivors], axis=0), dtype=np.float64)

    def _check_sum(
        self,
        updates: Mapping[int, npt.NDArray[np.float64]],
        aggregate: npt.ArrayLike,
        survivors: Sequence[int],
    ) -> None:
        err = float(np.max(np.abs(np.asarray(aggregate) - self._expected(updates, survivors))))
        assert err <= self.tolerance(len(survivors)), f"aggregate off by {err}"

    # ------------------------------------------------------------------ tests

    def test_honest_run(self) -> None:
        updates = self.make_updates()
        result = self._simulate(updates)
        assert tuple(result.survivors) == tuple(sorted(updates))
        self._check_sum(updates, result.aggregate, result.survivors)
        assert len(result.server_view) > 0

    def test_dropout_at_each_stage(self) -> None:
        updates = self.make_updates()
        cutoff = list(self.stages()).index(self.input_stage())
        for position, stage in enumerate(self.stages()):
            victims = self.dropout_victims(stage)
            result = self._simulate(updates, dropouts={stage.value: victims})
            if position <= cutoff:
                expected = [c for c in sorted(updates) if c not in victims]
            else:
                expected = sorted(updates)
            assert list(result.survivors) == expected, stage
            self._check_sum(updates, result.aggregate, result.survivors)

    def test_too_few_survivors_at_each_stage(self) -> None:
        updates = self.make_updates()
        stages = list(self.stages())
        for stage in stages:
            round_ = self.open_round(
                updates, round_id=7, dropouts={stage.value: self.fatal_dropouts(stage)}
            )
            with pytest.raises(ThresholdNotMetError):
                self.finish(round_)
            if stage is not stages[-1]:
                # (at the last stage the few who answer already sent their shares: fewer than t)
                leaked = [m for m in round_.server_view if self.reveals_secrets(m)]
                assert not leaked, (
                    f"a client revealed secrets although the round aborted at {stage.value}"
                )

    def test_malformed_message_at_each_stage(self) -> None:
        updates = self.make_updates()
        for stage in self.stages():
            round_ = self.open_round(updates, round_id=11)
            round_.run_until(stage)
            cid, request = sorted(round_.pending.items())[0]
            for bad in self.malformed_variants(request):
                with pytest.raises(SecAggError):
                    round_.send_to_client(cid, bad)
            round_.deliver_requests()
            sender, replies = sorted(round_.outbox.items())[0]
            for bad in self.malformed_variants(replies[0]):
                with pytest.raises(SecAggError):
                    round_.send_to_server(bad)
            aggregate, survivors = self.finish(round_)
            assert tuple(survivors) == tuple(sorted(updates)), stage
            self._check_sum(updates, aggregate, survivors)

    def test_replayed_message_at_each_stage(self) -> None:
        updates = self.make_updates()
        previous: tuple[int, Any] | None = None
        for stage in self.stages():
            round_ = self.open_round(updates, round_id=13)
            earlier: dict[int, Any] = {}
            for done in self.stages():
                if done is stage:
                    break
                round_.collect()
                earlier = dict(round_.replies)
                round_.close()
            round_.collect()
            cid, reply = sorted(round_.replies.items())[0]
            with pytest.raises(ReplayError):
                round_.send_to_server(reply)
            request = round_.requests[cid]
            with pytest.raises((ReplayError, AlreadyFinalizedError)):
                round_.send_to_client(cid, request)
            if earlier:
                old_cid, old_reply = sorted(earlier.items())[0]
                with pytest.raises(ReplayError):
                    round_.send_to_server(old_reply)
                previous = (old_cid, old_reply)
            aggregate, survivors = self.finish(round_)
            self._check_sum(updates, aggregate, survivors)
        assert previous is not None

    def test_cross_round_message_at_each_stage(self) -> None:
        updates = self.make_updates()
        for stage in self.stages():
            target = self.open_round(updates, round_id=21)
            other = self.open_round(updates, round_id=22)
            target.run_until(stage)
            other.run_until(stage)
            cid, foreign_request = sorted(other.pending.items())[0]
            with pytest.raises((ReplayError, StageError)):
                target.send_to_client(cid, foreign_request)
            other.deliver_requests()
            target.deliver_requests()
            sender, foreign_replies = sorted(other.outbox.items())[0]
            with pytest.raises((ReplayError, StageError)):
                target.send_to_server(foreign_replies[0])
            aggregate, survivors = self.finish(target)
            assert tuple(survivors) == tuple(sorted(updates)), stage
            self._check_sum(updates, aggregate, survivors)

    def test_client_listed_dropped_and_surviving_is_refused(self) -> None:
        updates = self.make_updates()
        round_ = self.open_round(updates, round_id=31)
        round_.run_until(Stage.UNMASKING)
        cid, forged = self.forge_both_listed(round_)
        with pytest.raises(ProtocolAbortError):
            round_.send_to_client(cid, forged)
        aggregate, survivors = self.finish(round_)
        self._check_sum(updates, aggregate, survivors)

    def test_masked_inputs_are_uniform(self) -> None:
        updates = self.make_updates(constant=0.0)
        result = self._simulate(updates)
        payloads = self.masked_payloads(result.server_view)
        assert len(payloads) == len(updates)
        words = np.concatenate([w for w, _ in payloads])
        bits = payloads[0][1]
        assert words.size >= 128
        assert chi_square_uniform_pvalue(words, bits) > UNIFORMITY_ALPHA
        # the same input masked by different clients must not repeat
        assert len({w.tobytes() for w, _ in payloads}) == len(payloads)
        # a plain encoding of 0.0 is one constant; masking must destroy it
        assert not math.isclose(float(np.std(words.astype(np.float64))), 0.0)

    def test_padded_survivor_list_is_refused(self) -> None:
        outcome = self.padding_attack(weakened=False)
        assert len(outcome.real) < outcome.min_aggregate_size <= len(outcome.listed)
        assert set(outcome.real) < set(outcome.listed)
        if self.padding_non_claim:
            # the documented non-claim: this class trusts the server's list
            assert outcome.server_got_the_small_sum(), self.padding_non_claim
            return
        assert outcome.total is None, (
            "the server obtained a sum of fewer than min_aggregate_size inputs"
        )
        assert outcome.released == 0
        assert set(outcome.refusals) == set(outcome.asked), (
            f"parties that did not refuse: {outcome.refusals}"
        )
        untyped = {p: e for p, e in outcome.refusals.items() if not is_typed_error(e)}
        assert not untyped, f"refusals that are not SecAggErrors: {untyped}"
        # positive control: with the check switched off the same script gets the small sum
        control = self.padding_attack(weakened=True)
        assert len(control.real) < control.min_aggregate_size <= len(control.listed)
        assert control.server_got_the_small_sum(), control.refusals

    def test_reused_round_id_is_refused(self, tmp_path: Path) -> None:
        updates = self._attack_updates()
        paths = {p: tmp_path / f"party-{p}.rounds" for p in self.logged_parties()}
        logs = {p: RoundLog.at(path) for p, path in paths.items()}
        first = self.open_logged_round(updates, round_id=71, logs=logs)
        aggregate, survivors = self.finish(first)
        self._check_sum(updates, aggregate, survivors)
        # the same identities with the same log objects, then a restart over the same files
        for again in (logs, {p: RoundLog.at(path) for p, path in paths.items()}):
            second = self.open_logged_round(updates, round_id=71, logs=again, like=first)
            firsts = self.first_messages(second, first)
            assert set(firsts) == set(paths)
            for party, message in sorted(firsts.items()):
                with pytest.raises(ReplayError):
                    second.send_to_client(party, message)
                assert self.released_nothing(second, party)
        # the parties' default logs
        first = self.open_logged_round(updates, round_id=72, logs=None)
        self.finish(first)
        second = self.open_logged_round(updates, round_id=72, logs=None, like=first)
        firsts = self.first_messages(second, first)
        for party, message in sorted(firsts.items()):
            if self.default_log_non_claim:
                assert second.send_to_client(party, message), self.default_log_non_claim
                continue
            with pytest.raises(ReplayError):
                second.send_to_client(party, message)
            assert self.released_nothing(second, party)

    def test_one_bad_client_counts_as_dropped(self) -> None:
        if self.bad_client_non_claim:
            pytest.skip(self.bad_client_non_claim)
        updates = self._attack_updates()
        cases = self.bad_client_cases()
        assert cases
        for i, case in enumerate(cases):
            round_id = 81 + 2 * i
            round_ = self.open_round(updates, round_id=round_id)
            round_.clients[case.party] = _Corrupting(
                round_, round_.clients[case.party], case, self.corrupt
            )
            try:
                aggregate, survivors = self.finish(round_)
            except RoundRestartError as exc:
                # a wrong graph-seed contribution counts as withheld: the honest server starts
                # a new round (new id) without that client, as for any client that dropped there
                assert exc.excluded == {case.party}, case
                rest = {c: v for c, v in updates.items() if c != case.party}
                aggregate, survivors = self.finish(self.open_round(rest, round_id=round_id + 1))
            assert case.party in self.refused_by_server(round_), case
            clients = set(updates)
            expected = (
                clients if case.in_sum or case.party not in clients else clients - {case.party}
            )
            assert set(survivors) == expected, case
            self._check_sum(updates, aggregate, survivors)
