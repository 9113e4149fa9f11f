"""Benchmark: packed threshold Paillier vs naive ``phe`` (one ``EncryptedNumber`` per value).

Same vector for both: d values quantised to 16 bits (``FixedPointEncoder``, headroom for
``max_clients = 1000``, so 26-bit slots), at 2048 and 3072-bit moduli. Measured in one
process, ours and the peer timed round-robin, ratios taken per round (median):

* encryption per value: ours (``FIXED_BASE`` default, ``STANDARD`` textbook randomness and
  the opt-in ``SHORT_EXPONENT``) vs ``phe``'s ``public_key.encrypt(float)`` on a sample of
  values, extrapolated per value;
* aggregation per value: multiplying one contribution into the running aggregate vs
  ``phe``'s ``EncryptedNumber + EncryptedNumber``;
* threshold decryption per value (``t`` partial decryptions + combining + unpacking), with
  and without the batched proofs of correctness, vs ``phe``'s single-key ``decrypt`` per value.
  Each threshold step runs once on the whole vector; the single-key peer is sampled between
  the steps; the least-disturbed sample of each side is compared;
* one partial decryption of one ciphertext vs one single-key CRT decryption (``phe``'s
  ``raw_decrypt``) at the same modulus size (interleaved, least-disturbed sample of each);
* encryption plus the proof of plaintext knowledge (what a client does in the malicious and
  semi-malicious variants) and the cost of checking that proof;
* bytes per value on the wire vs one ciphertext per value;
* (2048 bits) one partial decryption of the whole vector on every core
  (``workers="auto"``) vs on one, wall-clock time; and the partial-decryption cost per value
  Damgard-Jurik would have with ``s = 1, 2, 3`` (measured exponentiations at those sizes).

``--model-scale`` runs instead one real round at model scale, stage by stage
(:mod:`secagg.benchmarks.paillier_model_scale`): 3 clients, a 3-of-5 committee, 2048 bits,
reported at d = 1,000,000 and measured at ``--model-d`` values (default 100,000, about
2 CPU minutes, extrapolated linearly; ``--model-d 1000000`` measures the whole model, about
17 CPU minutes), with decryption's cost per value before and after ``--workers``.

Key generation (trusted dealer, safe primes) and the one-off fixed-base table are timed
separately. Every time is the CPU time of this process (``time.process_time``): on a shared
machine wall-clock time penalises a 40 ms exponentiation (preempted) much more than a 3 ms
one, which would skew the ratios. Run: ``secagg bench paillier [--quick] [--json PATH]``
or, from a source checkout, ``python benchmarks/bench_paillier.py [--quick] [--json PATH]``.

Targets: encryption (default ``FIXED_BASE``) at least 80x naive ``phe`` per value; one
partial decryption at most 10x one single-key decryption; at most 7 bytes per value on
the wire at 2048 bits; (``--model-scale``) decryption's wall-clock cost per value lower
with the decryptors' workers than without.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import textwrap
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from phe import paillier as phe_paillier
from tqdm import tqdm

from secagg.benchmarks._timing import interleaved, median_ratio
from secagg.benchmarks.paillier_model_scale import (
    MEASURED_D,
    damgard_jurik_rows,
    model_scale_table,
    parallel_speedup,
    run_model_scale,
)
from secagg.benchmarks.targets import Target, judge, summary_line, verdict
from secagg.outputs import json_text, prepare_output_file
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.paillier import (
    EncryptedVector,
    PaillierAggregator,
    Randomness,
    verify_plaintext_knowledge,
)
from secagg.primitives.threshold_paillier import (
    combine_partial_decryptions,
    deal_threshold_key,
    decryption_workers,
    partial_decrypt,
    verify_partial_decryption,
)

VALUE_BITS = 16
MAX_CLIENTS = 1000
TABLE_WIDTH = 100
ENCRYPTION_METRIC = "encryption (us/value), FIXED_BASE (default)"
PARTIAL_METRIC = "one partial decryption vs one single-key decryption (ms)"
WIRE_METRIC = "bytes per value on the wire"
ENCRYPTION_TARGET = Target(80.0, False, ">= 80x")
PARTIAL_TARGET = Target(10.0, True, "<= 10x")
WIRE_TARGET = Target(7.0, True, "<= 7 B")
N_DECRYPTORS = 5
THRESHOLD = 3


def _clock() -> float:
    """CPU seconds of this (single-threaded) process: immune to the other jobs that share the
    machine, which would otherwise preempt long operations more often than short ones."""
    return time.process_time()


def _quiet() -> bool:
    return not sys.stderr.isatty()


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = _clock()
    out = fn()
    return _clock() - start, out


def bench_key_size(key_bits: int, d: int, sample: int, repeat: int) -> list[dict[str, Any]]:
    """All measurements for one modulus size; returns table rows."""
    rows: list[dict[str, Any]] = []

    def row(
        metric: str, ours: float, peer: float | None, unit: str, ratio: float | None, **extra: Any
    ) -> None:
        rows.append(
            {
                "key_bits": key_bits,
                "metric": metric,
                "ours": ours,
                "peer": peer,
                "unit": unit,
                "ratio": ratio,
            }
            | extra
        )

    keygen_s, (pk, shares) = _timed(
        lambda: deal_threshold_key(
            n_decryptors=N_DECRYPTORS, threshold=THRESHOLD, key_bits=key_bits
        )
    )
    single_s, (phe_pk, phe_sk) = _timed(
        lambda: phe_paillier.generate_paillier_keypair(n_length=key_bits)
    )
    row(
        "key generation (s): dealer with safe primes vs phe keypair",
        keygen_s,
        single_s,
        "s",
        keygen_s / single_s,
    )

    rng = np.random.default_rng(0)
    update = rng.uniform(-1.0, 1.0, d)
    # 16-bit quantisation; the encoder's ring has room for the sum of MAX_CLIENTS updates
    encoder = FixedPointEncoder.symmetric(
        1.0,
        bits=VALUE_BITS + (MAX_CLIENTS - 1).bit_length(),
        max_clients=MAX_CLIENTS,
        levels=(1 << VALUE_BITS) - 1,
    )
    encoded = encoder.encode(update, rng=rng)
    packing = pk.packing_for(encoder)
    encryptors = {r: pk.encryptor(packing, randomness=r) for r in Randomness}
    table_s, _ = _timed(lambda: encryptors[Randomness.FIXED_BASE].encrypt(encoded[: packing.slots]))

    naive_values = [float(x) for x in update[:sample]]

    def naive_encrypt() -> list[Any]:
        return [phe_pk.encrypt(x) for x in naive_values]

    # the client of the malicious and semi-malicious variants also proves plaintext knowledge
    # (once per vector); the server and every decryptor check the proof
    default = encryptors[Randomness.FIXED_BASE]
    context = b"bench/client"
    check_times: list[float] = []

    def encrypt_and_prove() -> None:
        vec, witness = default.encrypt_with_witness(encoded)
        proof = default.prove_knowledge(vec, witness, context=context)
        elapsed, _ = _timed(
            lambda: verify_plaintext_knowledge(pk.paillier, vec, proof, context=context)
        )
        check_times.append(elapsed)

    def encrypt_and_prove_timed() -> float:
        before = len(check_times)
        start = _clock()
        encrypt_and_prove()
        total = _clock() - start
        return total - sum(check_times[before:])

    client_times: list[float] = []
    fns: list[Callable[[], object]] = (
        [naive_encrypt]
        + [partial(e.encrypt, encoded) for e in encryptors.values()]
        + [lambda: client_times.append(encrypt_and_prove_timed())]
    )
    samples = interleaved(fns, repeat, clock=_clock, warm_up=False)
    naive_per_value = [s / sample for s in samples[0]]
    labels = {
        Randomness.FIXED_BASE: "encryption (us/value), FIXED_BASE (default)",
        Randomness.STANDARD: "encryption (us/value), STANDARD (packing only)",
        Randomness.SHORT_EXPONENT: (
            "encryption (us/value), SHORT_EXPONENT (opt-in, extra assumption)"
        ),
    }
    series = [
        (labels[r], [t / d for t in times])
        for r, times in zip(encryptors, samples[1:-1], strict=True)
    ]
    series.append(
        (
            "encryption + proof of plaintext knowledge (us/value), FIXED_BASE",
            [t / d for t in client_times],
        )
    )
    for label, ours_per_value in series:
        row(
            label,
            statistics.median(ours_per_value) * 1e6,
            statistics.median(naive_per_value) * 1e6,
            "us",
            median_ratio(naive_per_value, ours_per_value),
            higher_is_better=True,
        )
    row(
        "checking one contribution's plaintext proof (us/value)",
        statistics.median(check_times) / d * 1e6,
        None,
        "us",
        None,
    )

    # aggregation: one more contribution into a running aggregate vs phe's pairwise additions
    vector = encryptors[Randomness.FIXED_BASE].encrypt(encoded)
    naive_a = naive_encrypt()
    naive_b = naive_encrypt()
    agg = PaillierAggregator(pk.paillier, packing, d)
    agg.add(vector)

    def ours_add() -> None:
        agg.add(vector)  # a real product each time; a handful of adds stays far below the headroom

    add_samples = interleaved(
        [lambda: [a + b for a, b in zip(naive_a, naive_b, strict=True)], ours_add],
        5 * repeat,
        clock=_clock,
        warm_up=False,
    )
    naive_add = [s / sample for s in add_samples[0]]
    ours_add_pv = [s / d for s in add_samples[1]]
    row(
        "aggregation (us/value per contribution)",
        statistics.median(ours_add_pv) * 1e6,
        statistics.median(naive_add) * 1e6,
        "us",
        median_ratio(naive_add, ours_add_pv),
        higher_is_better=True,
    )

    # threshold decryption of a legitimate aggregate (sum of 3 contributions)
    total = PaillierAggregator(pk.paillier, packing, d)
    for _ in range(3):
        total.add(encryptors[Randomness.FIXED_BASE].encrypt(encoded))
    aggregate = total.result()
    context = b"bench/decryption"
    # the single-key peer is sampled between the (long) threshold steps, so that load
    # changes during the run hit both sides; its median is the reference
    naive_cts = naive_encrypt()
    naive_dec_samples: list[float] = []

    def naive_decrypt() -> None:
        elapsed, _ = _timed(lambda: [phe_sk.decrypt(c) for c in naive_cts])
        naive_dec_samples.append(elapsed / sample)

    naive_decrypt()
    partial_times, partials = [], []
    # no bar object when quiet: tqdm's monitor thread would make the workers row below start
    # its processes from a fork server (about a second) instead of forking them
    steps = shares[:THRESHOLD]
    bar = steps if _quiet() else tqdm(steps, desc=f"partial decryptions {key_bits}")
    for share in bar:
        t, p = _timed(partial(partial_decrypt, share, aggregate, prove=False, context=context))
        partial_times.append(t)
        partials.append(p)
        naive_decrypt()
    combine_s, plaintexts = _timed(
        lambda: packing.unpack(
            combine_partial_decryptions(pk, aggregate, partials, verify=False, context=context),
            d,
            summands=3,
        )
    )
    if not np.array_equal(plaintexts, 3 * encoded):
        raise RuntimeError("threshold decryption mismatch")
    prove_s, proven = _timed(
        lambda: partial_decrypt(shares[0], aggregate, prove=True, context=context)
    )
    naive_decrypt()
    verify_s, _ = _timed(lambda: verify_partial_decryption(pk, aggregate, proven, context=context))
    naive_decrypt()
    # least-disturbed sample on both sides (the machine is shared); decryptors work in
    # parallel in a deployment, the totals below add them up as if sequential
    naive_dec = min(naive_dec_samples)
    one_partial = min(partial_times)
    prove_s = max(prove_s, one_partial)
    honest = (THRESHOLD * one_partial + combine_s) / d
    row(
        f"threshold decryption (us/value), {THRESHOLD} partials + combine, no proofs",
        honest * 1e6,
        naive_dec * 1e6,
        "us",
        naive_dec / honest,
        higher_is_better=True,
    )
    malicious = (THRESHOLD * (prove_s + verify_s) + combine_s) / d
    row(
        f"threshold decryption (us/value), {THRESHOLD} partials with proofs, verified + combine",
        malicious * 1e6,
        naive_dec * 1e6,
        "us",
        naive_dec / malicious,
        higher_is_better=True,
    )
    row(
        "one decryptor's work (us/value): partial decryption + proof",
        prove_s / d * 1e6,
        naive_dec * 1e6,
        "us",
        naive_dec / (prove_s / d),
        higher_is_better=True,
    )

    # one partial decryption vs one single-key (CRT) decryption of one ciphertext
    one = EncryptedVector(aggregate.key_id, 1, aggregate.ciphertexts[:1])
    phe_ct = naive_cts[0].ciphertext(be_secure=False)
    ratio_samples = interleaved(
        [
            lambda: partial_decrypt(shares[1], one, prove=False),
            lambda: phe_sk.raw_decrypt(phe_ct),
        ],
        max(5 * repeat, 15),
        clock=_clock,
        warm_up=False,
    )
    # both are a few exponentiations of fixed size: the least-disturbed sample of each is
    # their cost on this machine (timeit's advice); the median of per-round ratios is kept too
    row(
        "one partial decryption vs one single-key decryption (ms)",
        min(ratio_samples[0]) * 1e3,
        min(ratio_samples[1]) * 1e3,
        "ms",
        min(ratio_samples[0]) / min(ratio_samples[1]),
        higher_is_better=False,
        median_ratio=median_ratio(ratio_samples[0], ratio_samples[1]),
    )

    wire = vector.wire_size(pk.paillier) / d
    naive_wire = float((phe_pk.nsquare.bit_length() + 7) // 8)
    row(
        "bytes per value on the wire",
        wire,
        naive_wire,
        "B",
        naive_wire / wire,
        higher_is_better=True,
    )
    row("fixed-base table, one-off per key (s)", table_s, None, "s", None)
    if key_bits == 2048:
        # decryptors on every core (wall-clock: the work moves to worker processes), and
        # whether Damgard-Jurik s > 1 would lower the cost per value (it does not)
        workers = decryption_workers("auto")
        one_s, many_s, _, _ = parallel_speedup(shares[2], aggregate, workers)
        row(
            f"one partial decryption of the vector (wall s), workers = {workers} vs 1",
            many_s,
            one_s,
            "s",
            one_s / many_s,
            higher_is_better=True,
        )
        rows.extend(damgard_jurik_rows(pk, packing.slot_bits))
    _judge_targets(rows, key_bits)
    for r in rows:
        r.update(
            {
                "d": d,
                "quantisation_bits": VALUE_BITS,
                "ring_bits": encoder.bits,
                "max_clients": MAX_CLIENTS,
                "slots_per_ciphertext": packing.slots,
                "slot_bits": packing.slot_bits,
                "ciphertexts": len(vector.ciphertexts),
                "naive_sample": sample,
                "decryptors": N_DECRYPTORS,
                "threshold": THRESHOLD,
            }
        )
    return rows


def _judge_targets(rows: list[dict[str, Any]], key_bits: int) -> None:
    """Attach the suite's targets to the rows they concern."""
    for r in rows:
        if r["metric"] == ENCRYPTION_METRIC:
            judge(r, r["ratio"], ENCRYPTION_TARGET, f"encryption at {key_bits} bits")
        elif r["metric"] == PARTIAL_METRIC:
            judge(r, r["ratio"], PARTIAL_TARGET, f"partial decryption at {key_bits} bits")
        elif r["metric"] == WIRE_METRIC and key_bits == 2048:
            judge(r, r["ours"], WIRE_TARGET, f"wire size at {key_bits} bits", unit="B/value")


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def table(rows: list[dict[str, Any]], *, markdown: bool = False) -> str:
    """Human-readable (or markdown) table of the rows."""
    header = ["key bits", "metric", "ours", "naive phe", "ratio", "target", "verdict"]
    body = [
        [
            str(r["key_bits"]),
            r["metric"],
            _fmt(r["ours"]),
            _fmt(r["peer"]),
            "-"
            if r["ratio"] is None
            else (f"{r['ratio']:.1f}x" if r["ratio"] >= 10 else f"{r['ratio']:.2f}x"),
            r.get("target", "-"),
            verdict(r),
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(c[i]) for c in [header, *body]) for i in range(len(header))]
    # the metric column wraps so that the table keeps to TABLE_WIDTH columns
    widths[1] = max(
        24, min(widths[1], TABLE_WIDTH - sum(widths) + widths[1] - 2 * (len(widths) - 1))
    )
    fmt = "  ".join(f"{{:{'<' if i == 1 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = []
    for cells in [header, *body]:
        metric = textwrap.wrap(cells[1], widths[1], subsequent_indent="  ") or [""]
        lines.append(fmt.format(cells[0], metric[0], *cells[2:]).rstrip())
        blank = [""] * len(cells)
        lines += [fmt.format(blank[0], more, *blank[2:]).rstrip() for more in metric[1:]]
    return "\n".join(lines)


def run(*, quick: bool = False) -> dict[str, Any]:
    """Run the suite: ``quick`` does 2048 bits only, d = 2,000, fewer repetitions."""
    tqdm.monitor_interval = 0  # no monitor thread: decryption workers can then be forked
    key_sizes = (2048,) if quick else (2048, 3072)
    d = 2_000 if quick else 10_000
    sample = 20 if quick else 40
    repeat = 2 if quick else 3
    rows: list[dict[str, Any]] = []
    for bits in key_sizes:
        rows += bench_key_size(bits, d, sample, repeat)
    return {
        "suite": "paillier",
        "rows": rows,
        "quick": quick,
        "table": table(rows) + "\n\n" + summary_line(rows, quick=quick),
        "config": {
            "d": d,
            "value_bits": VALUE_BITS,
            "max_clients": MAX_CLIENTS,
            "key_bits": list(key_sizes),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2048 bits only, d = 2,000")
    parser.add_argument("--json", metavar="PATH", help="write the rows here")
    parser.add_argument("--markdown", metavar="PATH", help="write the table as markdown here")
    parser.add_argument(
        "--model-scale",
        action="store_true",
        help="instead: one real round (3 clients, 3-of-5 committee, 2048 bits) reported at "
        f"d = 1,000,000, measured at --model-d values (default {MEASURED_D:,})",
    )
    parser.add_argument("--model-d", type=int, default=MEASURED_D, metavar="D")
    parser.add_argument(
        "--workers", default="auto", help="processes per decryptor (int or 'auto', default)"
    )
    args = parser.parse_args(argv)
    if args.model_scale:
        return _model_scale_main(args)
    json_path = prepare_output_file(args.json, "--json") if args.json else None
    markdown_path = prepare_output_file(args.markdown, "--markdown") if args.markdown else None
    result = run(quick=args.quick)
    print(result["table"])
    if json_path is not None:
        json_path.write_text(json_text(result, default=str))
    if markdown_path is not None:
        with open(markdown_path, "w") as fh:
            fh.write(table(result["rows"], markdown=True) + "\n")
    return 0


def _model_scale_main(args: argparse.Namespace) -> int:
    json_path = prepare_output_file(args.json, "--json") if args.json else None
    if args.model_d < 1:
        raise SystemExit("--model-d must be a positive number of values")
    workers = args.workers if args.workers == "auto" else int(args.workers)
    result = run_model_scale(d=args.model_d, workers=workers, progress=not _quiet())
    result["table"] = model_scale_table(result)
    print(result["table"])
    if json_path is not None:
        json_path.write_text(json_text(result, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
