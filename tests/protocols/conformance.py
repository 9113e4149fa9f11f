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
* masked inputs in the server's view are uniform (chi-square, alpha = 1e-6).

Protocol-specific behaviour lives in the hooks below, each documented. The round object
returned by :meth:`open_round` must offer the stepping interface of
:class:`protocols.driver.RoundRunner`: ``stages``, ``stage``, ``pending``,
``requests``, ``outbox``, ``replies``, ``server_view``, ``deliver_requests()``,
``deliver_replies()``, ``collect()``, ``close()``, ``step()``, ``run_until(stage)``,
``send_to_server(msg | bytes)``, ``send_to_client(cid, msg | bytes)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from protocols import Stage, simulate
from secagg.errors import (
    AlreadyFinalizedError,
    ProtocolAbortError,
    ReplayError,
    SecAggError,
    StageError,
    ThresholdNotMetError,
)

__all__ = ["ProtocolConformance", "chi_square_uniform_pvalue"]

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


class ProtocolConformance:
    """Abstract base: hooks to override are marked *hook*; tests are ``test_*``."""

    protocol: ClassVar[str] = ""
    num_clients: ClassVar[int] = 8
    dimension: ClassVar[int] = 24

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
        self, updates: Mapping[int, npt.ArrayLike], *, round_id: int, dropouts: Mapping[str, Iterable[int]] | None = None
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

    def masked_payloads(self, server_view: Sequence[Any]) -> list[tuple[npt.NDArray[np.uint64], int]]:
        """*hook*: the masked inputs in a server view, as (ring elements, bits)."""
        pytest.skip(f"{self.protocol}: no ring-valued masked inputs")

    # ------------------------------------------------------------------ helpers

    def _simulate(self, updates: Mapping[int, Any], **kwargs: Any) -> Any:
        return simulate(updates, protocol=self.protocol, **{**self.config(), **kwargs})

    def _expected(self, updates: Mapping[int, npt.NDArray[np.float64]], survivors: Iterable[int]) -> npt.NDArray[np.float64]:
        return np.sum([updates[c] for c in survivors], axis=0)

    def _check_sum(
        self, updates: Mapping[int, npt.NDArray[np.float64]], aggregate: npt.ArrayLike, survivors: Sequence[int]
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
            round_ = self.open_round(updates, round_id=7, dropouts={stage.value: self.fatal_dropouts(stage)})
            with pytest.raises(ThresholdNotMetError):
                self.finish(round_)
            if stage is not stages[-1]:
                # (at the last stage the few who answer already sent their shares: fewer than t)
                leaked = [m for m in round_.server_view if self.reveals_secrets(m)]
                assert not leaked, f"a client revealed secrets although the round aborted at {stage.value}"

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
