"""SecAgg / SecAgg+ benchmarks: ours vs the physical floor and vs Flower 1.41's SecAgg+.

Run with ``secagg bench secagg [--quick] [--json PATH]`` or, from a source checkout,
``python benchmarks/bench_secagg.py [--quick] [--json PATH] [--floors-only]`` (the last
runs only the comparisons with the floors).

Sections (everything in one process, one run, so that ratios are meaningful; times are
CPU seconds of the process, ``time.process_time``, which other jobs on a shared machine do
not inflate; all the work measured is single-threaded):

* **client masking** — one client's time to turn its encoded input into the masked-input
  message (``SecAggClient.handle(ShareForward)``: decrypt ``k`` share ciphertexts, ``k``
  key agreements + HKDF, ``k + 1`` mask expansions, encoding to bytes), median over the
  clients of a real round, against the *floor* measured right after it: ``k`` raw X25519
  exchanges plus ``k + 1`` AES-256-CTR keystreams of one word per element (4 bytes in the
  32-bit ring benchmarked here), each followed by one numpy add in the ring's word
  (``uint32``) into an accumulator (the faster of whole-vector and cache-blocked order, see
  :func:`secagg.benchmarks._floors.mask_floor_seconds`). Target: at most 1.2x at ``d = 1M``.
* **server unmasking** — with 10 % of the clients dropped at the masked-input stage: the
  server's handling of the unmask responses plus ``advance()`` (share parsing, batched
  Shamir reconstruction, commitment checks, key agreements, mask regeneration), against
  the floor of regenerating the same masks (keystream + add per mask, X25519 per pair).
  Target: at most 1.2x.
* **round vs floor** — the same whole round against the sum of its floors: every surviving
  client's masking floor, the server's, its streaming sum (one ``uint32`` add per masked
  input) and one conversion of each client's floats into ring words. Target (SecAgg+):
  at most 1.3x. These three are measured by repetition, ours and then the floors, and
  the ratio is the median of the per-repetition ratios.
* **whole round** — ``n`` in {10, 50, 100}, complete (SecAgg) and derived (SecAgg+) graphs,
  ``d`` in {100k, 1M}, 10 % dropouts, the default (malicious-server) threat model: keys
  signed, consistency check, every message through the binary wire format. This is the
  code path of ``protocols.simulate`` (encode, ``setup_round``, run, decode).
* **Flower** — Flower 1.41's real ``secaggplus_mod`` (client) and ``SecAggPlusWorkflow``
  stages (server) driven in process through a minimal in-memory ``Grid`` on the same
  ``n``, ``k``, ``t``, ``d`` and dropped clients (Flower's ``num_shares = k + 1`` counts the
  client itself). Target: ours at least 20x faster on the reference configuration
  (n = 50, complete graph, d = 100k; measured only in the full run).
* **scale** — SecAgg+ with up to 1,000 simulated clients at ``d = 10k``: per-client time
  grows like ``k``, not ``n``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from tqdm import tqdm

from protocols import ShareForward, Stage, UnmaskResponse, encode_message, setup_round
from secagg.benchmarks._floors import (
    encode_floor_seconds,
    mask_floor_seconds,
    rounding_floor_seconds,
    sum_floor_seconds,
    verification_floor_seconds,
    verifications_so_far,
)
from secagg.benchmarks.targets import Target, judge, summary_line, verdict
from secagg.outputs import json_text, prepare_output_file
from secagg.primitives.encoding import FixedPointEncoder
from threat_models import GraphKind, ProtocolParameters, ServerClass, ThreatModel, select_parameters

BITS = 32
DROP_FRACTION = 0.1
# CPU seconds of this process: everything measured is single-threaded, and CPU time is not
# inflated by other jobs on a shared machine the way wall-clock time is.
_clock = time.process_time
THREAT_MODEL = ThreatModel()
CLIENT_TARGET = Target(1.2, True, "<= 1.2x floor")
SERVER_TARGET = Target(1.2, True, "<= 1.2x floor")
ROUND_TARGET = Target(1.3, True, "<= 1.3x floor")
FLOWER_TARGET = Target(15.0, False, ">= 15x")
"""Flower's SecAgg+ against ours at every configuration of the comparison table."""
FLOWER_REFERENCE_TARGET = Target(40.0, False, ">= 40x")
"""The same at the reference configuration :data:`FLOWER_REFERENCE`."""
#: The configuration the stricter Flower target is set for: (n, graph, d).
FLOWER_REFERENCE = (50, GraphKind.COMPLETE, 100_000)


class _Progress:
    """A tqdm bar over the benchmark's runs (silent when quiet or not on a terminal)."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.bar = tqdm(
            total=total, disable=quiet or not sys.stderr.isatty(), desc="secagg bench", unit="run"
        )
        self.quiet = quiet

    def done(self, text: str) -> None:
        self.bar.update(1)
        if self.bar.disable:
            if not self.quiet:
                print(text, file=sys.stderr, flush=True)
        else:
            self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


# ----------------------------------------------------------------------------- our round


def _timed(record: list[tuple[Any, float]], fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrapper(message: Any) -> Any:
        started = _clock()
        out = fn(message)
        record.append((message, _clock() - started))
        return out

    return wrapper


def run_ours(
    updates: Mapping[int, np.ndarray],
    *,
    graph: GraphKind,
    drop: Iterable[int],
    seed: int,
    parameters: ProtocolParameters | None = None,
) -> dict[str, Any]:
    """One whole round through the real state machines; returns timings and the error.

    ``parameters`` overrides the ``k``, ``t`` and server class derived from the default
    threat model (used to run the honest-but-curious variant at the same ``k`` and ``t``).
    """
    n = len(updates)
    dropped = sorted(drop)
    rng = np.random.default_rng(seed)
    started = _clock()
    verifications_before = verifications_so_far()
    encoder = FixedPointEncoder.symmetric(1.0, bits=BITS, max_clients=n)
    # a 32-bit ring takes 32-bit words (the client's cheapest input), as protocols.simulate does
    inputs = {cid: encoder.encode(v, rng=rng, dtype=np.uint32) for cid, v in updates.items()}
    protocol = "secagg" if graph is GraphKind.COMPLETE else "secagg+"
    runner = setup_round(
        inputs,
        bits=BITS,
        protocol=protocol,
        threat_model=THREAT_MODEL,
        parameters=parameters,
        dropouts={"masked_input": dropped} if dropped else None,
        record_view=False,
    )
    del inputs
    client_calls: list[tuple[Any, float]] = []
    server_calls: list[tuple[Any, float]] = []
    for client in runner.clients.values():
        setattr(client, "handle", _timed(client_calls, client.handle))  # noqa: B010
    server = runner.server
    setattr(server, "handle", _timed(server_calls, server.handle))  # noqa: B010
    encode_seconds: list[float] = []
    unmask_advance = 0.0
    masking_sets: dict[int, frozenset[int]] = {}
    while not runner.finished:
        stage = runner.stage
        runner.collect()
        if stage is Stage.MASKED_INPUT:
            masking_sets = {cid: c.masking_set for cid, c in runner.clients.items()}
        if stage is Stage.MASKED_INPUT:
            for replies in runner.outbox.values():
                for reply in replies:
                    t0 = _clock()
                    encode_message(reply)
                    encode_seconds.append(_clock() - t0)
        t0 = _clock()
        runner.close()
        if stage is Stage.UNMASKING:
            unmask_advance = _clock() - t0
    result = server.result
    aggregate = encoder.decode_sum(result.ring_sum, len(result.survivors))
    total = _clock() - started
    verifications = verifications_so_far() - verifications_before
    truth = np.sum([updates[c] for c in result.survivors], axis=0)
    masking = [s for m, s in client_calls if isinstance(m, ShareForward)]
    unmask_handle = sum(s for m, s in server_calls if isinstance(m, UnmaskResponse))
    params = server.config.parameters
    # masks the server regenerated: one self mask per survivor, one per (dropped, survivor) pair
    pairs = sum(len(masking_sets[c] & set(dropped)) for c in result.survivors)
    return {
        "seconds": total,
        "client_masking_seconds": statistics.median(masking) + statistics.median(encode_seconds),
        "client_seconds_total": sum(s for _, s in client_calls),
        "server_unmask_seconds": unmask_handle + unmask_advance,
        "server_masks": len(result.survivors) + pairs,
        "server_pairs": pairs,
        "degree": params.degree,
        "threshold": params.threshold,
        "survivors": len(result.survivors),
        "max_error": float(np.max(np.abs(aggregate - truth))),
        "verifications": verifications,
    }


# ----------------------------------------------------------------------------- Flower


def flower_available() -> bool:
    try:
        import flwr  # noqa: F401
    except ImportError:
        return False
    return True


def run_flower(
    updates: Mapping[int, np.ndarray], *, num_shares: int, threshold: int, drop: Iterable[int]
) -> dict[str, Any]:
    """One round of Flower's SecAgg+ (real client mod, real server workflow stages)."""
    from flwr.app import ConfigRecord, Context, Message, RecordDict
    from flwr.client.mod import secaggplus_mod
    from flwr.common import (
        Code,
        FitIns,
        FitRes,
        Status,
        ndarrays_to_parameters,
        parameters_to_ndarrays,
    )
    from flwr.compat.common import recorddict_compat as compat
    from flwr.server import ServerConfig
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.secure_aggregation.secaggplus_workflow import (
        SecAggPlusWorkflow,
        WorkflowState,
    )
    from flwr.serverapp.grid import Grid
    from flwr.supercore.task_identity import TaskIdentity

    logging.getLogger("flwr").setLevel(logging.ERROR)
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 0
    TaskIdentity.task_id = 0
    ids = sorted(updates)
    dropped = set(drop)

    class Proxy:
        def __init__(self, node_id: int) -> None:
            self.node_id = node_id
            self.cid = str(node_id)

    class Strategy:
        result: Any = None

        def configure_fit(
            self, server_round: int, parameters: Any, client_manager: Any
        ) -> list[Any]:
            return [(Proxy(i), FitIns(parameters, {})) for i in ids]

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            self.result = parameters_to_ndarrays(results[0][1].parameters)
            return results[0][1].parameters, {}

    class InProcessGrid(Grid):
        """Delivers each message (a copy, as a transport would) to the client mod."""

        def __init__(self) -> None:
            self.stage = 0
            self.client_seconds = 0.0
            self.contexts = {
                i: Context(run_id=1, node_id=i, node_config={}, state=RecordDict(), run_config={})
                for i in ids
            }

        def set_run(self, run: Any) -> None:
            pass

        @property
        def run(self) -> Any:
            return None

        def create_message(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

        def get_node_ids(self) -> list[int]:
            return ids

        def push_messages(self, messages: Any) -> Any:
            raise NotImplementedError

        def pull_messages(self, message_ids: Any) -> Any:
            raise NotImplementedError

        def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Any]:
            out = []
            for msg in messages:
                nid = msg.metadata.dst_node_id
                if self.stage == 2 and nid in dropped:  # vanish at collect_masked_vectors
                    continue

                def fit(m: Any, ctxt: Any, nid: int = nid) -> Any:
                    res = FitRes(
                        status=Status(Code.OK, ""),
                        parameters=ndarrays_to_parameters([updates[nid]]),
                        num_examples=1,
                        metrics={},
                    )
                    return Message(compat.fitres_to_recorddict(res, keep_input=True), reply_to=m)

                delivered = copy.deepcopy(msg)
                started = _clock()
                out.append(secaggplus_mod(delivered, self.contexts[nid], fit))
                self.client_seconds += _clock() - started
            self.stage += 1
            return out

    grid = InProcessGrid()
    strategy = Strategy()
    base = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    context = LegacyContext(base, config=ServerConfig(num_rounds=1), strategy=strategy)  # type: ignore[arg-type]
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({"current_round": 1})
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
        ndarrays_to_parameters([np.zeros_like(updates[ids[0]])]), True
    )
    workflow = SecAggPlusWorkflow(num_shares=num_shares, reconstruction_threshold=threshold)
    state = WorkflowState()
    stages = (
        workflow.setup_stage,
        workflow.share_keys_stage,
        workflow.collect_masked_vectors_stage,
        workflow.unmask_stage,
    )
    started = _clock()
    stage_seconds = []
    for step in stages:
        t0 = _clock()
        client_before = grid.client_seconds
        if not step(grid, context, state):
            raise RuntimeError(f"Flower's SecAgg+ halted at {step.__name__}")
        stage_seconds.append((_clock() - t0) - (grid.client_seconds - client_before))
    total = _clock() - started
    survivors = [i for i in ids if i not in dropped]
    truth = np.sum([updates[c] for c in survivors], axis=0)
    mean = np.asarray(strategy.result[0], dtype=np.float64)
    return {
        "seconds": total,
        "client_seconds_total": grid.client_seconds,
        "server_unmask_seconds": stage_seconds[-1],
        "max_error": float(np.max(np.abs(mean * len(survivors) - truth))),
    }


# ----------------------------------------------------------------------------- driver


def _updates(n: int, d: int, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {cid: rng.uniform(-1.0, 1.0, d) for cid in range(1, n + 1)}


def _drop(n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed + 1)
    count = round(DROP_FRACTION * n)
    return sorted(int(c) for c in rng.choice(np.arange(1, n + 1), size=count, replace=False))


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()
    out = [title, line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out)


def bench_floors(n: int, d: int, graph: GraphKind, reps: int) -> list[dict[str, Any]]:
    """Client masking, server unmasking and the whole round against their floors.

    Each repetition runs one real round and then measures its floors (the interleaving
    puts load from other jobs on both alike); the ratios are medians over repetitions of
    the per-repetition ratios.
    """
    client: list[tuple[float, float]] = []
    server: list[tuple[float, float]] = []
    whole: list[tuple[float, float]] = []
    full: list[tuple[float, float]] = []
    ours: dict[str, Any] = {}
    for rep in range(reps):
        updates = _updates(n, d, seed=rep)
        ours = run_ours(updates, graph=graph, drop=_drop(n, rep), seed=rep)
        k, survivors = ours["degree"], ours["survivors"]
        client_floor = statistics.median(
            mask_floor_seconds(k + 1, d, k, bits=BITS) for _ in range(3)
        )
        server_floor = mask_floor_seconds(ours["server_masks"], d, ours["server_pairs"], bits=BITS)
        round_floor = (
            survivors * client_floor
            + server_floor
            + sum_floor_seconds(survivors, d, bits=BITS)
            + encode_floor_seconds(list(updates.values()), bits=BITS)
        )
        full_floor = (
            round_floor
            + verification_floor_seconds(ours["verifications"])
            + rounding_floor_seconds(list(updates.values()))
        )
        del updates
        client.append((ours["client_masking_seconds"], client_floor))
        server.append((ours["server_unmask_seconds"], server_floor))
        whole.append((ours["seconds"], round_floor))
        full.append((ours["seconds"], full_floor))
    where = f"n={n} {graph.value} d={d:,}"
    common = {"n": n, "graph": graph.value, "k": ours["degree"], "d": d, "reps": reps}
    rows: list[dict[str, Any]] = []
    for section, pairs, target, what in (
        ("client_masking", client, CLIENT_TARGET, "client masking"),
        ("server_unmasking", server, SERVER_TARGET, "server unmasking"),
        ("round_vs_floor", whole, ROUND_TARGET, "whole round"),
        ("round_vs_full_floor", full, ROUND_TARGET, "whole round vs its full floor"),
    ):
        row: dict[str, Any] = {
            "section": section,
            **common,
            "seconds": statistics.median(a for a, _ in pairs),
            "floor_seconds": statistics.median(b for _, b in pairs),
            "ratio": statistics.median(a / b for a, b in pairs),
        }
        if section == "server_unmasking":
            row.update(dropped=n - ours["survivors"], masks=ours["server_masks"])
        if section == "round_vs_full_floor":
            row.update(verifications=ours["verifications"])
        if not section.startswith("round_vs") or graph is GraphKind.HARARY:
            judge(row, row["ratio"], target, f"{what} {where}")
        rows.append(row)
    return rows


def run(
    *, quick: bool = False, quiet: bool = False, flower: bool = True, floors_only: bool = False
) -> dict[str, Any]:
    """Run the suite; returns ``{"suite", "rows", "table", ...}`` (see ``secagg.cli.bench``).

    ``floors_only`` runs only the comparisons with the floors (:func:`bench_floors`).
    """
    floor_reps = 3
    if quick:
        round_grid = [(10, 10_000), (20, 10_000)]
        reps_for = {10_000: 3}
        flower_grid = [(10, GraphKind.COMPLETE, 10_000), (10, GraphKind.HARARY, 10_000)]
        floor_configs = [(20, 10_000)]
        scale_sizes, scale_d = [100, 200], 1_000
    else:
        round_grid = [(n, d) for d in (100_000, 1_000_000) for n in (10, 50, 100)]
        reps_for = {100_000: 3, 1_000_000: 1}
        flower_grid = [
            (10, GraphKind.COMPLETE, 100_000),
            (10, GraphKind.HARARY, 100_000),
            (50, GraphKind.HARARY, 100_000),
            (50, GraphKind.COMPLETE, 100_000),
        ]
        floor_configs = [(100, 1_000_000)]
        scale_sizes, scale_d = [250, 500, 1000], 10_000
    if floors_only:
        round_grid, flower_grid, scale_sizes = [], [], []
    rows: list[dict[str, Any]] = []
    measured: dict[tuple[int, str, int], dict[str, Any]] = {}
    with_flower = flower and flower_available()
    progress = _Progress(
        2 * len(round_grid)
        + 2 * len(floor_configs)
        + (len(flower_grid) if with_flower else 0)
        + len(scale_sizes),
        quiet,
    )

    for n, d in round_grid:
        for graph in (GraphKind.COMPLETE, GraphKind.HARARY):
            runs = []
            for rep in range(reps_for[d]):
                updates = _updates(n, d, seed=rep)
                runs.append(run_ours(updates, graph=graph, drop=_drop(n, rep), seed=rep))
                del updates
            best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
            measured[(n, graph.value, d)] = best
            rows.append(
                {
                    "section": "round",
                    "n": n,
                    "graph": graph.value,
                    "k": best["degree"],
                    "t": best["threshold"],
                    "d": d,
                    "dropped": n - best["survivors"],
                    "reps": len(runs),
                    "seconds": best["seconds"],
                    "client_masking_seconds": best["client_masking_seconds"],
                    "server_unmask_seconds": best["server_unmask_seconds"],
                    "max_error": best["max_error"],
                }
            )
            progress.done(f"ours n={n} {graph.value} d={d}: {_fmt(best['seconds'])}")

    for n, d in floor_configs:
        for graph in (GraphKind.COMPLETE, GraphKind.HARARY):
            rows += bench_floors(n, d, graph, floor_reps)
            progress.done(f"floors n={n} {graph.value} d={d} done")

    if with_flower:
        for n, graph, d in flower_grid:
            params = select_parameters(n, THREAT_MODEL, graph=graph)
            updates = _updates(n, d, seed=0)
            drop = _drop(n, 0)
            num_shares = n if params.complete else params.degree + 1
            peer = run_flower(updates, num_shares=num_shares, threshold=params.threshold, drop=drop)
            key = (n, graph.value, d)
            ours = measured.get(key) or run_ours(updates, graph=graph, drop=drop, seed=0)
            # Flower's security model: honest-but-curious server, no signatures, same k and t
            curious = dataclasses.replace(params, server=ServerClass.CURIOUS)
            curious_runs = [
                run_ours(updates, graph=graph, drop=drop, seed=0, parameters=curious)
                for _ in range(reps_for.get(d, 1))
            ]
            ours_curious = sorted(curious_runs, key=lambda r: r["seconds"])[len(curious_runs) // 2]
            flower_row: dict[str, Any] = {
                "section": "flower",
                "n": n,
                "graph": graph.value,
                "k": params.degree,
                "t": params.threshold,
                "d": d,
                "dropped": len(drop),
                "seconds": ours["seconds"],
                "curious_seconds": ours_curious["seconds"],
                "peer_seconds": peer["seconds"],
                "ratio": peer["seconds"] / ours["seconds"],
                "curious_ratio": peer["seconds"] / ours_curious["seconds"],
                "peer_server_unmask_seconds": peer["server_unmask_seconds"],
                "server_unmask_seconds": ours["server_unmask_seconds"],
                "peer_max_error": peer["max_error"],
                "max_error": ours["max_error"],
            }
            judge(
                flower_row,
                flower_row["ratio"],
                FLOWER_REFERENCE_TARGET if (n, graph, d) == FLOWER_REFERENCE else FLOWER_TARGET,
                f"Flower/ours n={n} {graph.value} d={d:,}",
            )
            rows.append(flower_row)
            progress.done(f"flower n={n} {graph.value} d={d}: {_fmt(peer['seconds'])}")

    for n in scale_sizes:
        updates = _updates(n, scale_d, seed=0)
        ours = run_ours(updates, graph=GraphKind.HARARY, drop=_drop(n, 0), seed=0)
        per_client = ours["client_seconds_total"] / n
        rows.append(
            {
                "section": "scale",
                "n": n,
                "graph": "harary",
                "k": ours["degree"],
                "t": ours["threshold"],
                "d": scale_d,
                "dropped": n - ours["survivors"],
                "seconds": ours["seconds"],
                "per_client_seconds": per_client,
                "per_client_per_neighbour_seconds": per_client / ours["degree"],
                "server_unmask_seconds": ours["server_unmask_seconds"],
                "max_error": ours["max_error"],
            }
        )
        progress.done(f"scale n={n}: {_fmt(ours['seconds'])}")
    progress.close()

    return {
        "suite": "secagg",
        "quick": quick,
        "rows": rows,
        "table": format_table(rows, quick=quick),
        "threat_model": {
            "server": THREAT_MODEL.server.value,
            "colluding_fraction": THREAT_MODEL.colluding_fraction,
            "dropout_fraction": THREAT_MODEL.dropout_fraction,
        },
        "bits": BITS,
        "drop_fraction": DROP_FRACTION,
    }


def format_table(rows: list[dict[str, Any]], *, quick: bool = False) -> str:
    """Human-readable tables, one per section, and the summary line of the targets."""
    parts = []
    sel = [
        r
        for r in rows
        if r["section"]
        in ("client_masking", "server_unmasking", "round_vs_floor", "round_vs_full_floor")
    ]
    if sel:
        parts.append(
            _table(
                "Ours vs the physical floor (same run)",
                [
                    "what",
                    "n",
                    "graph",
                    "k",
                    "d",
                    "ours",
                    "floor",
                    "ours/floor",
                    "target",
                    "verdict",
                ],
                [
                    [
                        r["section"].replace("_", " "),
                        str(r["n"]),
                        r["graph"],
                        str(r["k"]),
                        f"{r['d']:,}",
                        _fmt(r["seconds"]),
                        _fmt(r["floor_seconds"]),
                        f"{r['ratio']:.2f}x",
                        str(r.get("target", "-")),
                        verdict(r),
                    ]
                    for r in sel
                ],
            )
        )
        full = [r for r in sel if r["section"] == "round_vs_full_floor"]
        if full:
            parts.append(
                "round vs floor: the masks, the server's sum and one conversion of each update "
                "into ring words.\nround vs full floor: that plus what the default threat model "
                "requires and a bare round does not do:\n  "
                + "; ".join(
                    f"{r['graph']}: {r['verifications']:,} Ed25519 verifications" for r in full
                )
                + ", and one uniform draw per coordinate for stochastic rounding."
            )
    sel = [r for r in rows if r["section"] == "round"]
    if sel:
        parts.append(
            _table(
                "Whole round, in process (malicious-server variant, 10% dropped at masked_input)",
                [
                    "n",
                    "graph",
                    "k",
                    "t",
                    "d",
                    "reps",
                    "round",
                    "client mask",
                    "server unmask",
                    "max |err|",
                ],
                [
                    [
                        str(r["n"]),
                        r["graph"],
                        str(r["k"]),
                        str(r["t"]),
                        f"{r['d']:,}",
                        str(r["reps"]),
                        _fmt(r["seconds"]),
                        _fmt(r["client_masking_seconds"]),
                        _fmt(r["server_unmask_seconds"]),
                        f"{r['max_error']:.1e}",
                    ]
                    for r in sel
                ],
            )
        )
    sel = [r for r in rows if r["section"] == "flower"]
    judged = any("target_met" in r for r in sel)
    if sel:
        parts.append(
            _table(
                "Flower 1.41 SecAgg+ vs ours, whole round, same n, k, t, d and dropped clients\n"
                "(ours: malicious-server variant; curious: ours in Flower's security model)",
                ["n", "graph", "k", "t", "d", "ours", "curious", "Flower", "F/ours", "F/curious"]
                + (["target", "verdict"] if judged else []),
                [
                    [
                        str(r["n"]),
                        r["graph"],
                        str(r["k"]),
                        str(r["t"]),
                        f"{r['d']:,}",
                        _fmt(r["seconds"]),
                        _fmt(r["curious_seconds"]),
                        _fmt(r["peer_seconds"]),
                        f"{r['ratio']:.1f}x",
                        f"{r['curious_ratio']:.1f}x",
                    ]
                    + ([r.get("target", "-"), verdict(r)] if judged else [])
                    for r in sel
                ],
            )
        )
        parts.append(
            _table(
                "Server unmasking alone: ours vs Flower 1.41 (same rounds)",
                ["n", "graph", "d", "ours", "Flower", "Flower/ours"],
                [
                    [
                        str(r["n"]),
                        r["graph"],
                        f"{r['d']:,}",
                        _fmt(r["server_unmask_seconds"]),
                        _fmt(r["peer_server_unmask_seconds"]),
                        f"{r['peer_server_unmask_seconds'] / r['server_unmask_seconds']:.0f}x",
                    ]
                    for r in sel
                ],
            )
        )
    sel = [r for r in rows if r["section"] == "scale"]
    if sel:
        parts.append(
            _table(
                "Scale: SecAgg+ with many clients",
                ["n", "k", "t", "d", "round", "per client", "per client / k", "server unmask"],
                [
                    [
                        str(r["n"]),
                        str(r["k"]),
                        str(r["t"]),
                        f"{r['d']:,}",
                        _fmt(r["seconds"]),
                        _fmt(r["per_client_seconds"]),
                        _fmt(r["per_client_per_neighbour_seconds"]),
                        _fmt(r["server_unmask_seconds"]),
                    ]
                    for r in sel
                ],
            )
        )
    parts.append(summary_line(rows, quick=quick) + _flower_note(rows))
    return "\n\n".join(parts)


def _flower_note(rows: list[dict[str, Any]]) -> str:
    """Why the Flower targets were not judged, when they were not."""
    if any(r["section"] == "flower" for r in rows):
        return ""
    return "\n  Flower comparison not run (flwr not installed, or --no-flower)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (under a minute)")
    parser.add_argument("--json", metavar="PATH", help="write the result as JSON")
    parser.add_argument("--no-flower", action="store_true", help="skip the Flower comparison")
    parser.add_argument(
        "--floors-only", action="store_true", help="only client, server and round vs the floors"
    )
    args = parser.parse_args(argv)
    json_path = prepare_output_file(args.json, "--json") if args.json else None
    started = time.perf_counter()
    result = run(quick=args.quick, flower=not args.no_flower, floors_only=args.floors_only)
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["machine"] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    print(result["table"])
    if json_path is not None:
        json_path.write_text(json_text(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
