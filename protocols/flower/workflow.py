"""The server side: a Flower workflow that runs this library's SecAgg / SecAgg+ server.

Use it from a ``ServerApp`` built on Flower's Message API::

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        pki = load_pki("keys/pki.json")  # signed policies: the clients' identity keys
        workflow = SecureAggregationWorkflow(SecAggPolicy(), pki=pki)
        result = workflow.start(grid, ArrayRecord(model.state_dict()), num_rounds=10)

Each round is one run of :class:`~protocols.masking.server.SecAggServer`: every protocol stage is
one exchange of Flower ``train`` messages with the cohort's nodes (the global model and
the train configuration travel with the masked-input stage, when the clients train), so
the server never holds an individual update -- only masked vectors, then the sum of the
survivors' (noised) updates. Nodes that do not answer a stage within ``stage_timeout``
seconds, or answer with an error or an invalid message, are dropouts from that stage on;
the protocol recovers their masks as long as the threat model's threshold holds, and
aborts the round (:class:`~secagg.errors.ThresholdNotMetError`) otherwise.

Against a server that may lie (semi-malicious or malicious threat models) the round adds
two stages: ``graph_seed``, in which the clients fix the graph from committed random
contributions, and ``consistency_check``, in which they sign the survivor set. A node that
commits and then withholds its contribution cannot be dropped from the seed, so the round
starts again under a fresh round id without it (at most ``max_restarts`` times). In signed
rounds (malicious server) the workflow verifies every signature it relays against the
``pki`` it is given and the digest of the global model it sends; a node whose message fails
verification counts as dropped.

The workflow reacts as soon as replies arrive. Flower's ``Grid`` of the supported releases
has no blocking receive (its ``send_and_receive`` pulls with a fixed sleep in between: in
1.42, 0.1 s in process and 3 s over the SuperLink's API), so the workflow pulls with an
adaptive back-off: the first wait is ``min_poll_interval`` (2 ms), each pull that brings
nothing makes the next wait 1.5 times longer, up to ``poll_interval``, and a pull that
brings a reply starts again from ``min_poll_interval``. A stage thus ends within a few
milliseconds of its last reply while replies keep arriving (after a silence, within half
the time waited plus ``min_poll_interval``), and a long wait (clients training) costs one
pull per ``poll_interval``. The stage deadline is the same as with fixed polling: the last pull
happens at the deadline, and a node whose reply has not arrived by then is a dropout.

Flower's own ``SecAggPlusWorkflow`` works only with the legacy strategy API; this
workflow uses the Message API directly and reimplements FedAvg's loop in :meth:`start`
(per-round Poisson sampling of nodes, a privacy ledger, optional central evaluation).
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from logging import INFO, WARNING
from typing import Any, cast

import dp_accounting
import numpy as np
import numpy.typing as npt
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid

from dp.budget import BudgetScope, PrivacyBudget
from dp.central import CentralGaussianMechanism
from dp.distributed import DistributedDPEncoder
from dp.ledger import PrivacyLedger
from dp.ledger_entries import ClientSampling, RoundRecord
from protocols.flower.policy import SecAggPolicy
from protocols.flower.records import (
    ARRAYS_KEY,
    CONFIG_KEY,
    HELLO_STAGE,
    MESSAGE_KEY,
    TRAIN_CONFIG_KEY,
    WIRE_VERSION,
    RoundAnnouncement,
    arrays_digest,
    flatten_arrays,
    pack_message,
    unpack_message,
)
from protocols.masking.config import RoundConfig
from protocols.masking.messages import Message as ProtocolMessage
from protocols.masking.server import SecAggServer
from protocols.stages import Stage
from secagg.errors import (
    InvalidParameterError,
    ProtocolAbortError,
    RoundRestartError,
    SecAggError,
    ThresholdNotMetError,
)
from secagg.primitives.encoding import VectorEncoder
from secagg.recipe.options import DPMode
from secagg.validation import is_int

__all__ = ["SecureAggregationWorkflow", "FlowerRoundResult", "WorkflowResult"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FlowerRoundResult:
    """One securely aggregated round.

    Attributes:
        round: the server round number.
        arrays: the new global model, ``global + server_lr * update``.
        update: the aggregated update (the mean; with user-level DP the noised sum over
            the expected cohort size).
        survivors: node ids whose updates are in the aggregate.
        dropped: node ids of the cohort whose updates are not.
        client_ids: node id -> protocol client id, for the cohort.
        epsilon: user-level epsilon spent so far (``None`` without DP).
        seconds: wall time of the round (every execution of it).
        excluded: node ids left out when the round restarted (also in ``dropped``).
    """

    round: int
    arrays: ArrayRecord
    update: ArrayRecord
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    client_ids: Mapping[int, int]
    epsilon: float | None
    seconds: float
    excluded: tuple[int, ...] = ()


@dataclass(frozen=True)
class WorkflowResult:
    """What :meth:`SecureAggregationWorkflow.start` produced.

    Attributes:
        arrays: the final global model.
        rounds: one entry per round (``None`` for a round that aborted).
        evaluations: round -> what ``evaluate_fn`` returned (round 0: the initial model).
    """

    arrays: ArrayRecord
    rounds: tuple[FlowerRoundResult | None, ...]
    evaluations: Mapping[int, object] = field(default_factory=dict)


class SecureAggregationWorkflow:
    """Secure aggregation of client updates over a Flower ``Grid`` (see the module docstring).

    Args:
        policy: the protocol, threat model and DP (clients must hold the same policy).
        stage_timeout: seconds to wait for the replies of a protocol stage.
        train_timeout: seconds to wait at the masked-input stage, when clients train
            (default ``stage_timeout``).
        poll_interval: the longest wait, in seconds, between two pulls for replies (the
            cap of the back-off, see the module docstring).
        min_poll_interval: the first wait after pushing a stage's messages, and after
            each pull that brought a reply (capped by ``poll_interval``; equal to it, the
            workflow polls at a fixed interval).
        population: clients that may ever take part (user-level accounting); default the
            number of nodes connected at the first round.
        clients_per_round: expected cohort per round for :meth:`start`'s Poisson sampling
            (default: every node every round).
        delta: target delta (default ``1 / (10 population)``).
        epsilon_budget: refuse rounds that would push the user-level epsilon above it.
        server_lr: server learning rate applied to the aggregated update.
        pki: client id -> identity public key (required by signed policies, i.e. a
            malicious-server threat model; :func:`protocols.flower.pki.load_pki`). The
            server verifies every signature it relays against it; nodes claiming an id
            outside it are left out.
        max_restarts: how many times :meth:`aggregate` starts a round again (fresh round
            id) without nodes that withheld their graph-seed contribution or sent shares
            that did not open. Default: the threat model's colluding clients for the cohort
            plus one, so that colluders misbehaving one after another cannot stop a round
            (every restart leaves out at least one of them).

    Raises:
        InvalidParameterError: invalid settings.
    """

    def __init__(
        self,
        policy: SecAggPolicy | None = None,
        *,
        stage_timeout: float = 300.0,
        train_timeout: float | None = None,
        poll_interval: float = 0.2,
        min_poll_interval: float = 0.002,
        population: int | None = None,
        clients_per_round: int | None = None,
        delta: float | None = None,
        epsilon_budget: float | None = None,
        server_lr: float = 1.0,
        pki: Mapping[int, bytes] | None = None,
        max_restarts: int | None = None,
    ) -> None:
        self.policy = policy if policy is not None else SecAggPolicy()
        if not isinstance(self.policy, SecAggPolicy):
            raise InvalidParameterError("policy must be a SecAggPolicy")
        for name, value in (
            ("stage_timeout", stage_timeout),
            ("poll_interval", poll_interval),
            ("min_poll_interval", min_poll_interval),
            ("server_lr", server_lr),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InvalidParameterError(f"{name} must be positive, got {value!r}")
        self.stage_timeout = float(stage_timeout)
        self.train_timeout = (
            float(train_timeout) if train_timeout is not None else self.stage_timeout
        )
        self.poll_interval = float(poll_interval)
        self.min_poll_interval = min(float(min_poll_interval), self.poll_interval)
        self.population = population
        self.clients_per_round = clients_per_round
        self.delta = delta
        self.epsilon_budget = epsilon_budget
        self.server_lr = float(server_lr)
        if max_restarts is not None and (not is_int(max_restarts) or max_restarts < 0):
            raise InvalidParameterError(
                f"max_restarts must be None or a non-negative int, got {max_restarts!r}"
            )
        self.max_restarts = max_restarts
        if self.policy.signed and pki is None:
            raise InvalidParameterError(
                "a signed policy (malicious server) needs the PKI: pki=load_pki(path), the "
                "clients' identity keys"
            )
        self.pki: dict[int, bytes] | None = _check_pki(pki) if pki is not None else None
        self._client_ids: dict[int, int] = {}
        self._ledger: PrivacyLedger | None = None

    # -- the FedAvg loop ---------------------------------------------------------------

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int,
        *,
        train_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], object] | None = None,
        min_nodes: int = 3,
        node_wait_timeout: float = 300.0,
    ) -> WorkflowResult:
        """Run ``num_rounds`` rounds of securely aggregated FedAvg.

        Waits until ``min_nodes`` nodes are connected, then each round Poisson-samples
        the cohort (rate ``clients_per_round / population``, from the OS CSPRNG), runs
        :meth:`aggregate` and applies the update. A round that aborts (too few
        survivors) leaves the model unchanged and is logged.
        """
        if not is_int(num_rounds) or num_rounds < 1:
            raise InvalidParameterError("num_rounds must be a positive int")
        nodes = self.wait_for_nodes(grid, min_nodes, timeout=node_wait_timeout)
        if self.population is None:
            self.population = len(nodes)
        arrays = initial_arrays
        evaluations: dict[int, object] = {}
        if evaluate_fn is not None:
            evaluations[0] = evaluate_fn(0, arrays)
        rounds: list[FlowerRoundResult | None] = []
        for server_round in range(1, num_rounds + 1):
            available = sorted(grid.get_node_ids())
            cohort = self._sample(available)
            log(
                INFO,
                "[secagg round %d] cohort of %d nodes (of %d connected)",
                server_round,
                len(cohort),
                len(available),
            )
            try:
                result = self.aggregate(
                    grid,
                    arrays,
                    train_config=train_config,
                    node_ids=cohort,
                    server_round=server_round,
                )
            except (ThresholdNotMetError, ProtocolAbortError) as exc:
                log(WARNING, "[secagg round %d] aborted: %s", server_round, exc)
                rounds.append(None)
                continue
            arrays = result.arrays
            rounds.append(result)
            log(
                INFO,
                "[secagg round %d] %d survivors, %d dropped%s",
                server_round,
                len(result.survivors),
                len(result.dropped),
                "" if result.epsilon is None else f", epsilon {result.epsilon:.3f}",
            )
            if evaluate_fn is not None:
                evaluations[server_round] = evaluate_fn(server_round, arrays)
        return WorkflowResult(arrays=arrays, rounds=tuple(rounds), evaluations=evaluations)

    def wait_for_nodes(self, grid: Grid, count: int, *, timeout: float) -> list[int]:
        """Block until at least ``count`` nodes are connected; returns their ids."""
        deadline = time.monotonic() + timeout
        backoff = _Backoff(self.min_poll_interval, self.poll_interval)
        seen = -1
        while True:
            nodes = sorted(grid.get_node_ids())
            if len(nodes) >= count:
                return nodes
            if time.monotonic() > deadline:
                raise ThresholdNotMetError(
                    f"only {len(nodes)} of {count} nodes connected within {timeout} s"
                )
            time.sleep(backoff.next_wait(progress=len(nodes) > seen))
            seen = len(nodes)

    def _sample(self, nodes: list[int]) -> list[int]:
        population = self.population or len(nodes)
        per_round = self.clients_per_round
        if per_round is None or per_round >= population:
            return nodes
        scale = 1 << 53
        threshold = int(per_round / population * scale)
        return [n for n in nodes if secrets.randbelow(scale) < threshold]

    # -- one round -----------------------------------------------------------------------

    def aggregate(
        self,
        grid: Grid,
        arrays: ArrayRecord,
        *,
        train_config: ConfigRecord | None = None,
        node_ids: Sequence[int] | None = None,
        server_round: int = 1,
    ) -> FlowerRoundResult:
        """Run one secure aggregation round with the given nodes (default: all connected).

        Against a server that may lie, the clients fix the round's graph from committed
        random contributions; a node that committed and then withheld its contribution
        makes the protocol refuse to go on (:class:`~secagg.errors.RoundRestartError`).
        The round then starts again, under a fresh round id, without those nodes -- at most
        ``max_restarts`` times; nothing was revealed in an execution that restarted.

        Raises:
            ThresholdNotMetError: fewer than 3 nodes, or too many dropped for the protocol
                (:class:`~secagg.errors.RoundRestartError` once the restarts are used up).
            ProtocolAbortError: the protocol detected an inconsistency.
            BudgetExceededError: the round would exceed the privacy budget (nothing sent).
        """
        started = time.perf_counter()
        nodes = sorted(set(node_ids if node_ids is not None else grid.get_node_ids()))
        excluded: set[int] = set()
        attempt = 0
        limit = self.max_restarts
        if limit is None:
            limit = (
                self.policy.round_threat_model(max(len(nodes), 1)).max_colluders(max(len(nodes), 1))
                + 1
            )
        while True:
            try:
                result = self._execute(grid, arrays, train_config, nodes, server_round)
            except _Restart as restart:
                if attempt >= limit:
                    raise restart.error from None
                attempt += 1
                left_out = restart.nodes
                excluded |= left_out
                nodes = [node for node in nodes if node not in left_out]
                log(
                    WARNING,
                    "[secagg round %d] restart %d of %d under a fresh round id without "
                    "nodes %s: %s",
                    server_round,
                    attempt,
                    limit,
                    sorted(left_out),
                    restart.error.reason,
                )
                continue
            break
        if excluded:
            result = replace(
                result,
                dropped=tuple(sorted(set(result.dropped) | excluded)),
                excluded=tuple(sorted(excluded)),
            )
        return replace(result, seconds=time.perf_counter() - started)

    def _execute(
        self,
        grid: Grid,
        arrays: ArrayRecord,
        train_config: ConfigRecord | None,
        nodes: list[int],
        server_round: int,
    ) -> FlowerRoundResult:
        """One execution of the protocol (one round id) with ``nodes``."""
        policy = self.policy
        if len(nodes) < 3:
            raise ThresholdNotMetError(
                f"secure aggregation needs at least 3 nodes, got {len(nodes)}"
            )
        if self.population is None:
            self.population = len(nodes)
        cohort_ids = self._client_id_map(grid, nodes, server_round)
        if len(cohort_ids) < 3:
            raise ThresholdNotMetError(f"only {len(cohort_ids)} nodes identified themselves")
        node_of = {cid: node for node, cid in cohort_ids.items()}
        n = len(cohort_ids)

        global_vector, layout = flatten_arrays(arrays)
        d = layout.size
        params = policy.parameters(n)
        seed = os.urandom(32) if policy.dp is DPMode.DISTRIBUTED else b""
        encoder = policy.encoder(n, d, seed or None)
        length = policy.vector_length(encoder, d)
        config = RoundConfig(
            round_id=secrets.randbits(63),
            parameters=params,
            bits=encoder.bits,
            vector_length=length,
        )
        privacy = self._privacy_record(
            encoder, params.min_aggregate_size, list(cohort_ids.values())
        )
        if privacy is not None:
            self._privacy_ledger().preview(privacy)  # refuse before anything is sent

        model_digest = arrays_digest(arrays)
        pki = (
            {cid: self.pki[cid] for cid in node_of}
            if policy.signed and self.pki is not None
            else None
        )
        server = SecAggServer(config, node_of.keys(), pki=pki, model_hash=model_digest)
        digest = policy.digest()
        requests = server.start()
        while server.stage is not None:
            stage = server.stage
            if stage is Stage.MASKED_INPUT and privacy is not None:
                # the first stage at which an update (noised, masked) leaves a client
                self._privacy_ledger().spend(privacy)
                privacy = None
            outgoing: list[tuple[int, Message]] = []
            for request in requests:
                node = node_of[request.recipient]
                header: dict[str, Any] = {"version": WIRE_VERSION, "stage": stage.value}
                if stage is Stage.ADVERTISE_KEYS:
                    announcement = RoundAnnouncement(
                        round_id=config.round_id,
                        client_id=request.recipient,
                        cohort=n,
                        degree=params.degree,
                        threshold=params.threshold,
                        bits=config.bits,
                        vector_length=length,
                        dimension=d,
                        policy_digest=digest,
                        model_digest=model_digest,
                        rotation_seed=seed,
                    )
                    header.update(announcement.to_record())
                records: dict[str, Any] = {
                    CONFIG_KEY: ConfigRecord(header),
                    MESSAGE_KEY: pack_message(request),
                }
                if stage is Stage.MASKED_INPUT:
                    records[ARRAYS_KEY] = arrays
                    records[TRAIN_CONFIG_KEY] = (
                        train_config if train_config is not None else ConfigRecord()
                    )
                outgoing.append((node, _request(RecordDict(records), node, server_round)))
            timeout = self.train_timeout if stage is Stage.MASKED_INPUT else self.stage_timeout
            stage_started = time.perf_counter()
            # each reply is checked and handed to the server as soon as it is pulled, so
            # the server's work overlaps the wait for the slower nodes
            self._exchange(
                grid,
                outgoing,
                timeout,
                on_reply=partial(self._deliver_from, server, stage, cohort_ids),
            )
            log(
                INFO,
                "[secagg round %d] stage %s: %d of %d replied (%.1f s)",
                server_round,
                stage.value,
                len(server.responded),
                len(outgoing),
                time.perf_counter() - stage_started,
            )
            try:
                requests = server.advance()
            except RoundRestartError as exc:
                raise _Restart(
                    exc, frozenset(node_of[c] for c in exc.excluded if c in node_of)
                ) from exc

        result = server.result
        survivors = tuple(sorted(node_of[c] for c in result.survivors))
        dropped = tuple(sorted(node_of[c] for c in result.dropped))
        code_length = encoder.encoded_length(d)
        total = np.asarray(
            encoder.decode_sum(result.ring_sum[:code_length], len(result.survivors)),
            dtype=np.float64,
        )
        update = self._reduce(
            total, result.ring_sum[code_length:], len(result.survivors), n, encoder.bits
        )
        new_vector = global_vector + self.server_lr * update
        order = list(arrays.keys())
        epsilon = self.epsilon_spent
        return FlowerRoundResult(
            round=server_round,
            arrays=layout.unflatten(new_vector, order=order),
            update=layout.unflatten(update, order=order),
            survivors=survivors,
            dropped=dropped,
            client_ids=dict(cohort_ids),
            epsilon=epsilon,
            seconds=0.0,
        )

    # -- helpers -------------------------------------------------------------------------

    def _client_id_map(self, grid: Grid, nodes: list[int], server_round: int) -> dict[int, int]:
        """node id -> protocol client id: assigned (unsigned rounds) or asked for (signed)."""
        if not self.policy.signed:
            return {node: index + 1 for index, node in enumerate(nodes)}
        unknown = [node for node in nodes if node not in self._client_ids]
        if unknown:
            header = ConfigRecord({"version": WIRE_VERSION, "stage": HELLO_STAGE})
            hello = [
                (node, _request(RecordDict({CONFIG_KEY: header}), node, server_round))
                for node in unknown
            ]
            for node, reply in self._exchange(grid, hello, self.stage_timeout):
                if reply.has_error() or CONFIG_KEY not in reply.content.config_records:
                    continue
                cid = reply.content.config_records[CONFIG_KEY].get("client-id")
                if is_int(cid) and 0 < int(cid) < 1 << 63:
                    self._client_ids[node] = int(cid)
        known = self.pki if self.pki is not None else {}
        mapping = {node: self._client_ids[node] for node in nodes if node in self._client_ids}
        unknown_ids = sorted(cid for cid in mapping.values() if cid not in known)
        if unknown_ids:
            log(
                WARNING,
                "nodes claim client ids %s that the PKI does not know; they are left out",
                unknown_ids,
            )
            mapping = {node: cid for node, cid in mapping.items() if cid in known}
        counts: dict[int, int] = {}
        for cid in mapping.values():
            counts[cid] = counts.get(cid, 0) + 1
        clashing = {cid for cid, k in counts.items() if k > 1}
        if clashing:
            log(WARNING, "nodes claim the same client ids %s; they are left out", sorted(clashing))
        return {node: cid for node, cid in mapping.items() if cid not in clashing}

    def _exchange(
        self,
        grid: Grid,
        outgoing: list[tuple[int, Message]],
        timeout: float,
        *,
        on_reply: Callable[[int, Message], None] | None = None,
    ) -> list[tuple[int, Message]]:
        """Push messages, then pull the replies until all arrived or ``timeout`` passed.

        Pulls back off adaptively (see the module docstring); the last pull is at (or,
        when handling replies ran past it, right after) the deadline, so a reply counts
        when it arrived within ``timeout`` seconds.
        ``on_reply(node, reply)`` is called for each reply as soon as it is pulled.
        """
        if not outgoing:
            return []
        ids = list(grid.push_messages([m for _, m in outgoing]))
        node_by_id = {mid: node for mid, (node, _) in zip(ids, outgoing) if mid}
        pending = set(node_by_id)
        replies: list[tuple[int, Message]] = []
        deadline = time.monotonic() + timeout
        backoff = _Backoff(self.min_poll_interval, self.poll_interval)
        arrived = False
        while pending:
            pulled_at = time.monotonic()
            for reply in grid.pull_messages(list(pending)):
                source = reply.metadata.reply_to_message_id
                if source not in pending:
                    continue
                pending.discard(source)
                arrived = True
                node = node_by_id[source]
                if not reply.has_error() and reply.metadata.src_node_id != node:
                    continue  # a reply must come from the node the request went to
                replies.append((node, reply))
                if on_reply is not None:
                    on_reply(node, reply)
            if not pending or pulled_at >= deadline:
                break
            # handling the replies may have taken us past the deadline: then pull once more
            # at once, for what arrived in time meanwhile
            wait = min(backoff.next_wait(progress=arrived), deadline - time.monotonic())
            if wait > 0:
                time.sleep(wait)
            arrived = False
        return replies

    @classmethod
    def _deliver_from(
        cls,
        server: SecAggServer,
        stage: Stage,
        client_ids: Mapping[int, int],
        node: int,
        reply: Message,
    ) -> None:
        """``_deliver`` the reply of ``node`` (its client id from ``client_ids``)."""
        cls._deliver(server, stage, client_ids[node], reply)

    @staticmethod
    def _deliver(server: SecAggServer, stage: Stage, client_id: int, reply: Message) -> None:
        """Hand one reply to the protocol server; a bad one makes its sender a dropout."""
        if reply.has_error():
            log(WARNING, "client %d failed at %s: %s", client_id, stage.value, reply.error.reason)
            return
        try:
            header = reply.content.config_records[CONFIG_KEY]
            if header.get("stage") != stage.value or header.get("client-id") != client_id:
                raise ProtocolAbortError("reply for another stage or client")
            message: ProtocolMessage = unpack_message(reply.content)
            if message.sender != client_id:
                raise ProtocolAbortError("the reply's sender differs from the node's client id")
            server.handle(message)
        except (SecAggError, KeyError) as exc:
            log(WARNING, "refused the reply of client %d at %s: %s", client_id, stage.value, exc)

    def _reduce(
        self,
        total: F64,
        weight_words: npt.NDArray[np.uint64],
        survivors: int,
        cohort: int,
        bits: int,
    ) -> F64:
        policy = self.policy
        if policy.dp is DPMode.CENTRAL:
            mechanism = CentralGaussianMechanism(
                policy.noise_multiplier, float(policy.clip_norm or 1.0)
            )
            total = np.asarray(mechanism.add_noise(total).value, dtype=np.float64)
        if policy.dp.user_level:
            return total / float(self.clients_per_round or cohort)
        weight_encoder = policy.weight_encoder(cohort, bits)
        if weight_encoder is not None:
            weight_sum = float(weight_encoder.decode_sum(weight_words[:1], survivors)[0])
            if not weight_sum > 0:
                raise ProtocolAbortError("the aggregated weight is not positive")
            return total / weight_sum
        return total / float(survivors)

    @property
    def effective_delta(self) -> float:
        """The delta of the reported epsilon (``1 / (10 population)`` unless given)."""
        return self.delta if self.delta is not None else 1.0 / (10 * max(2, self.population or 2))

    @property
    def epsilon_spent(self) -> float | None:
        """User-level epsilon (at :attr:`effective_delta`) spent so far; ``None`` before any
        noised update was released or without user-level DP."""
        if self._ledger is None:
            return None
        return float(self._ledger.population_epsilon(self.effective_delta))

    def _privacy_ledger(self) -> PrivacyLedger:
        """The ledger of user-level mechanisms (created on first use)."""
        if self._ledger is None:
            budgets = []
            if self.epsilon_budget is not None:
                budgets.append(
                    PrivacyBudget(self.epsilon_budget, self.effective_delta, BudgetScope.POPULATION)
                )
            accountant = "rdp" if self.policy.dp is DPMode.DISTRIBUTED else "pld"
            self._ledger = PrivacyLedger(budgets=budgets, accountant=accountant)
        return self._ledger

    def _privacy_record(
        self, encoder: VectorEncoder, min_survivors: int, client_ids: list[int]
    ) -> RoundRecord | None:
        """The round's user-level mechanism as a ledger record (``None`` without user-level DP).

        The workflow previews it before the round starts (refusing a round over budget
        before anything is sent) and spends it when the masked-input stage opens, the
        first at which an update leaves a client: an execution that aborts or restarts
        earlier released nothing.
        """
        policy = self.policy
        if not policy.dp.user_level:
            return None
        population = max(self.population or len(client_ids), len(client_ids))
        per_round = min(self.clients_per_round or population, population)
        if policy.dp is DPMode.DISTRIBUTED:  # the policy's encoder of distributed DP
            event = cast(DistributedDPEncoder, encoder).dp_event(min_survivors)
        else:
            event = dp_accounting.GaussianDpEvent(policy.noise_multiplier)
        return RoundRecord(
            mechanism=event,
            sampling=ClientSampling.from_counts(per_round, population),
            participants=tuple(str(c) for c in client_ids),
        )

    @property
    def ledger(self) -> PrivacyLedger | None:
        """The :class:`dp.ledger.PrivacyLedger` (``None`` without user-level DP or before a
        round)."""
        return self._ledger


def _check_pki(pki: Mapping[int, bytes]) -> dict[int, bytes]:
    if not isinstance(pki, Mapping):
        raise InvalidParameterError("pki must map client ids to 32-byte public keys")
    out: dict[int, bytes] = {}
    for cid, key in pki.items():
        if not is_int(cid) or not 0 < cid < 1 << 63:
            raise InvalidParameterError(f"PKI client ids are ints in [1, 2^63 - 1], got {cid!r}")
        if not isinstance(key, bytes) or len(key) != 32:
            raise InvalidParameterError(f"the PKI key of client {cid} is not 32 bytes")
        out[cid] = key
    return out


class _Backoff:
    """Waits between pulls: ``first``, growing by ``_BACKOFF_GROWTH`` while nothing
    arrives, capped at ``cap``; back to ``first`` after progress."""

    def __init__(self, first: float, cap: float) -> None:
        self.first = min(first, cap)
        self.cap = cap
        self._wait = self.first
        self._started = False

    def next_wait(self, *, progress: bool) -> float:
        """The wait before the next pull, given whether the last pull brought anything."""
        if progress or not self._started:
            self._wait = self.first
            self._started = True
        else:
            self._wait = min(self._wait * _BACKOFF_GROWTH, self.cap)
        return self._wait


#: How much longer each wait is than the last while nothing arrives.
_BACKOFF_GROWTH = 1.5


class _Restart(Exception):
    """An execution ended with :class:`RoundRestartError`; ``nodes``: the node ids to leave
    out."""

    def __init__(self, error: RoundRestartError, nodes: frozenset[int]) -> None:
        super().__init__(error.reason)
        self.error = error
        self.nodes = nodes


def _request(content: RecordDict, node: int, server_round: int) -> Message:
    """A ``train`` message to ``node``, grouped by round (Flower's Message constructor)."""
    return Message(
        content, dst_node_id=node, message_type=MessageType.TRAIN, group_id=str(server_round)
    )
