"""Benchmarks of the ``secagg`` primitives.

* Mask PRG throughput vs the physical floor measured in the same run: the raw AES-256-CTR
  (or ChaCha20) keystream for the same number of bytes (4 per element for rings of at most
  32 bits, 8 above: the PRG's output definition), produced by ``cryptography``'s
  ``update_into`` into a preallocated buffer with nothing else done. ``words`` is the
  expansion in the ring's word, ``expand`` the same widened to ``uint64``, ``add_into``
  the mask streamed into an accumulator of the ring's word.
* A client's input as ring words (``protocols.masking.masks.ring_words``: range check and
  copy into ``uint32``) against a plain conversion of the same array, for the encoder's
  ``uint64`` output and for ``uint32`` input.
* Shamir: reconstructing 1,000 32-byte secrets from 45 shares each (threshold 45 of 50),
  and Flower's pycryptodome-based ``combine_shares`` for the same kind of secret, when
  ``flwr`` is installed.

Target: mask expansion (``words``) at most 1.3x the raw keystream.

Run: ``secagg bench primitives [--quick] [--json PATH]`` or, from a source checkout,
``python benchmarks/bench_primitives.py [--quick] [--json PATH]``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from protocols.masking.masks import ring_words
from secagg.benchmarks._script import suite_main
from secagg.benchmarks._timing import interleaved, median_ratio
from secagg.benchmarks.targets import Target, judge, summary_line, verdict
from secagg.primitives.prg import MaskPRG, PrgAlgorithm, word_bytes
from secagg.primitives.shamir import reconstruct_many, split

EXPAND_TARGET = Target(1.3, True, "<= 1.3x floor")


def _median_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _raw_keystream(
    seed: bytes, nbytes: int, algorithm: PrgAlgorithm, zeros: bytes, buf: bytearray
) -> None:
    if algorithm is PrgAlgorithm.AES_256_CTR:
        cipher = Cipher(algorithms.AES(seed), modes.CTR(bytes(16)))
    else:
        cipher = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None)  # type: ignore[arg-type]
    cipher.encryptor().update_into(zeros, buf)


def bench_prg(d: int, repeat: int) -> list[dict[str, Any]]:
    seed = os.urandom(32)
    rows = []
    for algorithm in PrgAlgorithm:
        for bits in (16, 32, 62):
            word = word_bytes(bits)
            nbytes = d * word
            zeros = bytes(nbytes)
            buf = bytearray(nbytes + 16)
            prg = MaskPRG(seed, bits, algorithm=algorithm)
            acc = np.zeros(d, dtype=prg.dtype)
            floor_t, words_t, expand_t, stream_t = interleaved(
                [
                    lambda: _raw_keystream(seed, nbytes, algorithm, zeros, buf),  # noqa: B023 - called at once
                    lambda: prg.words(0, d),  # noqa: B023
                    lambda: prg.expand(d),  # noqa: B023
                    lambda: prg.add_into(acc),  # noqa: B023
                ],
                repeat,
            )
            floor = statistics.median(floor_t)
            words = statistics.median(words_t)
            expand = statistics.median(expand_t)
            stream = statistics.median(stream_t)
            row: dict[str, Any] = {
                "what": "prg",
                "algorithm": algorithm.value,
                "bits": bits,
                "d": d,
                "keystream_bytes": nbytes,
                "word_bytes": word,
                "floor_s": floor,
                "words_s": words,
                "expand_s": expand,
                "add_into_s": stream,
                # median of per-round ratios: robust to load that changes between rounds
                "words_vs_floor": median_ratio(words_t, floor_t),
                "expand_vs_floor": median_ratio(expand_t, floor_t),
                "add_into_vs_floor": median_ratio(stream_t, floor_t),
                "words_MB_per_s": nbytes / words / 1e6,
            }
            judge(row, row["words_vs_floor"], EXPAND_TARGET, f"expand {algorithm.value} {bits}-bit")
            rows.append(row)
    return rows


def bench_ring_words(d: int, repeat: int) -> list[dict[str, Any]]:
    """``ring_words`` (check + copy into the ring's word) vs a plain conversion, 32-bit ring."""
    rows = []
    for source in (np.uint64, np.uint32):
        values = np.random.default_rng(0).integers(0, 1 << 32, d, dtype=np.uint64).astype(source)
        plain_t, ours_t = interleaved(
            [
                lambda: values.astype(np.uint32),  # noqa: B023 - called at once
                lambda: ring_words(values, 32),  # noqa: B023
            ],
            repeat,
        )
        rows.append(
            {
                "what": "ring_words",
                "source": np.dtype(source).name,
                "d": d,
                "plain_s": statistics.median(plain_t),
                "ring_words_s": statistics.median(ours_t),
                "ratio": median_ratio(ours_t, plain_t),
            }
        )
    return rows


def bench_shamir(count: int, threshold: int, n: int, repeat: int) -> list[dict[str, Any]]:
    secrets_ = [os.urandom(32) for _ in range(count)]
    start = time.perf_counter()
    groups = [split(s, threshold=threshold, indices=list(range(1, n + 1))) for s in secrets_]
    split_s = time.perf_counter() - start
    subsets = [g[n - threshold :] for g in groups]
    if reconstruct_many(subsets) != secrets_:
        raise RuntimeError("reconstruction mismatch")
    ours = _median_time(lambda: reconstruct_many(subsets), repeat)
    row: dict[str, Any] = {
        "what": "shamir",
        "secrets": count,
        "threshold": threshold,
        "shares_per_secret": threshold,
        "split_s_total": split_s,
        "reconstruct_s_total": ours,
        "reconstruct_ms_per_secret": ours / count * 1e3,
    }
    try:
        from flwr.common.secure_aggregation.crypto import shamir as flwr_shamir
    except ImportError:
        row["flower_reconstruct_ms_per_secret"] = None
        return [row]
    secret = os.urandom(32)
    shares = flwr_shamir.create_shares(secret, threshold, n)
    if flwr_shamir.combine_shares(shares[:threshold]) != secret:
        raise RuntimeError("flower reconstruction mismatch")
    flwr_s = _median_time(
        lambda: flwr_shamir.combine_shares(shares[:threshold]), max(3, repeat // 2)
    )
    row["flower_reconstruct_ms_per_secret"] = flwr_s * 1e3
    row["speedup_per_secret_vs_flower"] = flwr_s / (ours / count)
    return [row]


def _table(rows: list[dict[str, Any]], *, quick: bool = False) -> str:
    lines = [
        "Mask PRG: median seconds, ratio to the raw keystream floor for the same bytes "
        f"(target: expand {EXPAND_TARGET.label})",
        f"{'algorithm':<12}{'bits':>5}{'word':>5}{'d':>10}{'floor s':>10}{'words s':>10}"
        f"{'x floor':>9}{'verdict':>9}{'expand s':>10}{'x floor':>9}{'add_into s':>12}"
        f"{'x floor':>9}",
    ]
    for r in rows:
        if r["what"] == "prg":
            lines.append(
                f"{r['algorithm']:<12}{r['bits']:>5}{r['word_bytes']:>5}{r['d']:>10}"
                f"{r['floor_s']:>10.4f}{r['words_s']:>10.4f}{r['words_vs_floor']:>9.2f}"
                f"{verdict(r):>9}{r['expand_s']:>10.4f}{r['expand_vs_floor']:>9.2f}"
                f"{r['add_into_s']:>12.4f}{r['add_into_vs_floor']:>9.2f}"
            )
    for r in rows:
        if r["what"] == "ring_words":
            lines.append(
                f"input as ring words, {r['source']} -> uint32, d = {r['d']}: "
                f"{r['ring_words_s'] * 1e3:.2f} ms, plain conversion {r['plain_s'] * 1e3:.2f} ms "
                f"({r['ratio']:.2f}x)"
            )
    for r in rows:
        if r["what"] == "shamir":
            lines.append("")
            lines.append(
                f"Shamir: {r['secrets']} secrets x {r['shares_per_secret']} shares reconstructed "
                f"in "
                f"{r['reconstruct_s_total']:.4f} s ({r['reconstruct_ms_per_secret']:.4f} "
                f"ms/secret); "
                f"split {r['secrets']} secrets into 50 shares: {r['split_s_total']:.3f} s"
            )
            if r.get("flower_reconstruct_ms_per_secret") is not None:
                lines.append(
                    f"Flower combine_shares, one 32-byte secret from {r['shares_per_secret']} "
                    f"shares: "
                    f"{r['flower_reconstruct_ms_per_secret']:.1f} ms -> ours is "
                    f"{r['speedup_per_secret_vs_flower']:.0f}x faster per secret"
                )
    lines += ["", summary_line(rows, quick=quick)]
    return "\n".join(lines)


def run(*, quick: bool = False) -> dict[str, Any]:
    d = 1 << 18 if quick else 1 << 20
    repeat = 7 if quick else 41
    rows = (
        bench_prg(d, repeat)
        + bench_ring_words(d, repeat)
        + bench_shamir(200 if quick else 1000, 45, 50, 3 if quick else 7)
    )
    return {"suite": "primitives", "quick": quick, "rows": rows, "table": _table(rows, quick=quick)}


def main(argv: list[str] | None = None) -> int:
    """The standalone script: print the table, write ``--json``."""
    return suite_main(__doc__, run, argv, quick_help="smaller sizes, fewer repetitions")


if __name__ == "__main__":
    raise SystemExit(main())
