"""Distributed threshold Paillier key generation against the trusted dealer.

For each modulus size and committee size, one in-process key generation
(:func:`protocols.paillier.keygen.generate_distributed_key`, every message through its wire
encoding): wall time, CPU time per party, message rounds, candidate batches and pairs
tried, bytes sent per party. The trusted dealer (:func:`deal_threshold_key`) runs in the same
process for comparison, and the cost of the distributed key in use (longer shares, textbook
encryption randomness) is measured against a dealt key.

Key generation is a random search: the number of candidates tried is geometric-like, so a
single run's time varies widely; the CPU per candidate is the stable figure, and
``expected candidates x CPU per candidate`` the estimate to compare.

Usage::

    python benchmarks/bench_keygen.py [--bits 2048 3072] [--parties 3 5 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from protocols.paillier.keygen import generate_distributed_key
from secagg.primitives.distributed_paillier import KeygenParameters
from secagg.primitives.paillier import Randomness
from secagg.primitives.threshold_paillier import (
    ThresholdPublicKey,
    deal_threshold_key,
    partial_decrypt,
)


def _expected_candidates(params: KeygenParameters) -> float:
    """Pairs to draw for one biprime: ``1 / P(p prime)^2`` for the candidates' residues mod L."""
    import math

    ln_p = params.half_bits * math.log(2)
    boost = 1.0
    step = params.residue_modulus
    for r in (2, *[x for x in range(3, params.n_parties + 1) if all(x % d for d in range(2, x))]):
        if step % r == 0:
            boost *= r / (r - 1)
    return float((ln_p / boost) ** 2)


def _time(call: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_distributed(bits: int, parties: int) -> dict[str, Any]:
    threshold = parties // 2 + 1
    start = time.perf_counter()
    key = generate_distributed_key(list(range(1, parties + 1)), threshold=threshold, key_bits=bits)
    wall = time.perf_counter() - start
    stats = key.stats
    cpu = list(stats.cpu_seconds.values())
    sent = list(stats.bytes_sent.values())
    params = KeygenParameters(key_bits=bits, n_parties=parties, threshold=threshold)
    return {
        "kind": "distributed",
        "bits": bits,
        "parties": parties,
        "threshold": threshold,
        "wall_s": wall,
        "cpu_per_party_mean_s": statistics.mean(cpu),
        "cpu_per_party_max_s": max(cpu),
        "cpu_total_s": sum(cpu),
        "rounds": stats.rounds,
        "attempts": stats.attempts,
        "candidates": stats.candidates,
        "expected_candidates": _expected_candidates(params),
        "batch_size": params.batch_size,
        "bytes_per_party_mean": statistics.mean(sent),
        "messages_per_party_mean": statistics.mean(stats.messages_sent.values()),
        "cpu_per_party_per_candidate_ms": 1000 * statistics.mean(cpu) / stats.candidates,
        "key_share_bits": key.public_key.share_bits,
        "_key": key,
    }


def run_dealer(bits: int, parties: int, reps: int) -> dict[str, Any]:
    threshold = parties // 2 + 1
    times = []
    key = None
    for _ in range(reps):
        start = time.perf_counter()
        key = deal_threshold_key(n_decryptors=parties, threshold=threshold, key_bits=bits)
        times.append(time.perf_counter() - start)
    return {
        "kind": "dealer",
        "bits": bits,
        "parties": parties,
        "reps": reps,
        "wall_median_s": statistics.median(times),
        "wall_min_s": min(times),
        "wall_max_s": max(times),
        "_key": key,
    }


def run_usage(bits: int, dealt: tuple[ThresholdPublicKey, Any], distributed: Any) -> dict[str, Any]:
    """Cost of using each key: encryption of 16 ciphertexts, one partial decryption of them."""
    out: dict[str, Any] = {"kind": "usage", "bits": bits}
    values = np.arange(1, 1 + 16 * 50, dtype=np.uint64) % 65536
    for name, public, share in (
        ("dealer", dealt[0], dealt[1][0]),
        ("distributed", distributed.public_key, next(iter(distributed.shares.values()))),
    ):
        packing = public.packing(value_bits=16, max_clients=4)
        length = packing.slots * 16
        vector_values = np.resize(values, length)
        for randomness in (Randomness.FIXED_BASE, Randomness.STANDARD):
            if randomness is Randomness.FIXED_BASE and public.encryption_base is None:
                continue
            encryptor = public.encryptor(packing, randomness=randomness)
            encryptor.encrypt(vector_values)  # builds the fixed-base table once
            out[f"{name}_encrypt16_{randomness.value}_s"] = _time(
                functools.partial(encryptor.encrypt, vector_values), 3
            )
        vector = public.encryptor(packing).encrypt(vector_values)
        out[f"{name}_partial16_s"] = _time(functools.partial(partial_decrypt, share, vector), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[2048, 3072])
    parser.add_argument("--parties", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--dealer-reps", type=int, default=3)
    parser.add_argument("--json", default=None, help="append one JSON object per row to PATH")
    args = parser.parse_args(argv)

    def emit(row: dict[str, Any]) -> None:
        public = {k: v for k, v in row.items() if not k.startswith("_")}
        print(json.dumps(public), flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(public) + "\n")

    for bits in args.bits:
        dealt = run_dealer(bits, 5, args.dealer_reps)
        emit(dealt)
        first = None
        for parties in args.parties:
            row = run_distributed(bits, parties)
            emit(row)
            first = first or row["_key"]
        if first is not None and dealt["_key"] is not None:
            emit(run_usage(bits, dealt["_key"], first))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
