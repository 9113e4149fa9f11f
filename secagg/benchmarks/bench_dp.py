"""Benchmarks of the DP mechanisms.

* Noise samplers, a million draws each: the exact discrete Gaussian and the Skellam
  sampler (both from AES-256-CTR), against two references measured in the same run --
  the physical floor (the AES-CTR keystream for one 64-bit word per draw) and numpy's
  non-cryptographic, floating-point samplers (``Generator.normal`` / ``poisson``), the
  usual but insecure choice. Also the words of keystream each sampler consumes per draw.
* The distributed-DP client encoding (rotate, clip, scale, round, noise, reduce) against
  plain fixed-point quantisation (:class:`secagg.primitives.encoding.FixedPointEncoder`) of the same
  vector, and the server's decode.

Target: a million draws of either sampler well under a second (at most 1 s; the quick run
draws 100,000 and is judged per million).

Run: ``secagg bench dp [--quick] [--json PATH]`` or, from a source checkout,
``python benchmarks/bench_dp.py [--quick] [--json PATH] [--markdown PATH]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from dp import samplers
from dp.distributed import DistributedDPEncoder, DistributedMechanism, select_parameters
from secagg.benchmarks._timing import interleaved, median_ratio
from secagg.benchmarks.targets import Target, judge, summary_line, verdict
from secagg.outputs import json_text, prepare_output_file
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.prg import keystream


class _CountingStream(samplers._WordStream):
    """A word stream that counts the 64-bit words drawn (to report words per draw)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.count = 0

    def words(self, count: int) -> Any:
        self.count += count
        return super().words(count)


def _words_per_draw(kind: str, param: float, n: int) -> float:
    stream = _CountingStream()
    if kind == "discrete_gaussian":
        samplers._discrete_gaussian(param, n, stream, samplers._FAST_PATH_MARGIN)
    else:
        samplers._poisson(param, 2 * n, stream)
    return stream.count / n


SAMPLER_TARGET = Target(1.0, True, "<= 1 s / 1M draws")


def bench_samplers(n: int, repeat: int) -> list[dict[str, Any]]:
    rows = []
    seed = os.urandom(32)
    rng = np.random.default_rng()  # the insecure reference, timed only
    cases: list[tuple[str, float]] = [
        ("discrete_gaussian", 1.0),
        ("discrete_gaussian", 50.0),
        ("discrete_gaussian", 1.0e4),
        ("discrete_gaussian", 1.0e8),
        ("skellam", 5.0),
        ("skellam", 500.0),
        ("skellam", 1.0e6),
        ("skellam", 1.0e11),
    ]
    for kind, param in cases:
        if kind == "discrete_gaussian":

            def ours(p: float = param) -> object:
                return samplers.sample_discrete_gaussian(p, n)

            def peer(p: float = param) -> object:
                return np.rint(rng.normal(0.0, p, n)).astype(np.int64)

            peer_name = "numpy rint(normal)"
        else:

            def ours(p: float = param) -> object:
                return samplers.sample_skellam(p, n)

            def peer(p: float = param) -> object:
                return rng.poisson(p, n) - rng.poisson(p, n)

            peer_name = "numpy poisson - poisson"
        ours_t, peer_t, floor_t = interleaved([ours, peer, lambda: keystream(seed, 8 * n)], repeat)
        row: dict[str, Any] = {
            "what": "sampler",
            "sampler": kind,
            "parameter": param,
            "draws": n,
            "ours_s": statistics.median(ours_t),
            "peer": peer_name,
            "peer_s": statistics.median(peer_t),
            "floor_s": statistics.median(floor_t),
            "ours_vs_peer": median_ratio(ours_t, peer_t),
            "ours_vs_floor": median_ratio(ours_t, floor_t),
            "words_per_draw": _words_per_draw(kind, param, min(n, 200_000)),
        }
        row["seconds_per_million_draws"] = row["ours_s"] * 1e6 / n
        judge(
            row,
            row["seconds_per_million_draws"],
            SAMPLER_TARGET,
            f"{kind} {param:.3g}, per million draws",
            unit="s",
        )
        rows.append(row)
    return rows


def bench_encoder(d: int, repeat: int) -> list[dict[str, Any]]:
    rows = []
    x = np.random.default_rng(0).normal(size=d)  # simulation data
    x *= 0.9 / np.linalg.norm(x)
    for mechanism in DistributedMechanism:
        params = select_parameters(
            mechanism=mechanism,
            noise_multiplier=1.0,
            clip_norm=1.0,
            bits=20,
            expected_clients=100,
            dimension=d,
        )
        enc = DistributedDPEncoder(params)
        plain = FixedPointEncoder.symmetric(1.0, bits=20, max_clients=100)
        encoded = enc.encode(x)
        timed: list[Callable[[], object]] = [
            functools.partial(enc.encode, x),
            functools.partial(plain.encode, x),
            functools.partial(enc.decode_sum, encoded, 1),
        ]
        dp_t, plain_t, dec_t = interleaved(timed, repeat)
        rows.append(
            {
                "what": "encoder",
                "mechanism": mechanism.value,
                "d": d,
                "padded_d": params.padded_dimension,
                "encode_s": statistics.median(dp_t),
                "fixed_point_encode_s": statistics.median(plain_t),
                "encode_vs_fixed_point": median_ratio(dp_t, plain_t),
                "decode_s": statistics.median(dec_t),
            }
        )
    return rows


def _table(rows: list[dict[str, Any]], *, quick: bool = False) -> str:
    draws = sorted({r["draws"] for r in rows if r["what"] == "sampler"})
    lines = [
        f"Samplers: median seconds for {' / '.join(f'{n:,}' for n in draws)} draws; ratios per "
        f"round (ours / reference); target: {SAMPLER_TARGET.label}",
        f"{'sampler':<18}{'param':>9}{'ours s':>9}{'s / 1M':>8}{'verdict':>9}"
        f"{'words/draw':>12}{'floor s':>9}{'x floor':>9}{'numpy s':>9}{'x numpy':>9}",
    ]
    for r in rows:
        if r["what"] == "sampler":
            lines.append(
                f"{r['sampler']:<18}{r['parameter']:>9.3g}{r['ours_s']:>9.3f}"
                f"{r['seconds_per_million_draws']:>8.3f}{verdict(r):>9}"
                f"{r['words_per_draw']:>12.2f}{r['floor_s']:>9.4f}{r['ours_vs_floor']:>9.1f}"
                f"{r['peer_s']:>9.3f}{r['ours_vs_peer']:>9.1f}"
            )
    lines.append("")
    lines.append("Distributed-DP encoding of one client vector vs plain fixed-point quantisation")
    lines.append(
        f"{'mechanism':<22}{'d':>9}{'D':>9}{'encode s':>10}{'fixed-pt s':>11}{'ratio':>7}"
        f"{'decode s':>10}"
    )
    for r in rows:
        if r["what"] == "encoder":
            lines.append(
                f"{r['mechanism']:<22}{r['d']:>9}{r['padded_d']:>9}{r['encode_s']:>10.4f}"
                f"{r['fixed_point_encode_s']:>11.4f}{r['encode_vs_fixed_point']:>7.1f}{r['decode_s']:>10.4f}"
            )
    lines += ["", summary_line(rows, quick=quick)]
    return "\n".join(lines)


def markdown(result: dict[str, Any], command: str) -> str:
    """The result as a markdown section (for benchmarks/RESULTS.md)."""
    rows = result["rows"]
    out = [
        "## DP mechanisms (`secagg bench --suite dp`)",
        "",
        f"Command: `{command}`.",
        "",
        "### Noise samplers, one million draws",
        "",
        "Floor: the AES-256-CTR keystream for one 64-bit word per draw "
        "(`secagg.primitives.prg.keystream`).",
        "Reference: numpy's non-cryptographic float samplers (`rint(normal)` -- not a discrete",
        "Gaussian -- and `poisson - poisson`), the common but insecure choice. Words/draw: AES-CTR",
        "words our sampler consumes per output.",
        "",
        "| sampler | parameter | ours (ms) | words/draw | floor (ms) | ours / floor | numpy (ms) | "
        "ours / numpy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["what"] == "sampler":
            param = "sigma" if r["sampler"] == "discrete_gaussian" else "mu"
            out.append(
                f"| {r['sampler'].replace('_', ' ')} | {param} = {r['parameter']:.3g} | "
                f"{r['ours_s'] * 1e3:.0f} | "
                f"{r['words_per_draw']:.2f} | {r['floor_s'] * 1e3:.1f} | {r['ours_vs_floor']:.1f} "
                f"| "
                f"{r['peer_s'] * 1e3:.0f} | {r['ours_vs_peer']:.1f} |"
            )
    slowest = max(r["ours_s"] for r in rows if r["what"] == "sampler")
    out += [
        "",
        f"A million draws take at most {slowest:.2f} s of wall time here (target: well under a "
        f"second).",
        "The discrete Gaussian is exact (Canonne-Kamath-Steinke rejection with every Bernoulli",
        "decided exactly: float fast path with a proven 2^-46 margin, arbitrary precision "
        "otherwise);",
        "its cost over numpy is the price of exactness (about 7.5 AES words per draw: two",
        "rejection loops) plus the cryptographic PRG. The Skellam sampler (Poisson by CDF "
        "inversion",
        "below mu = 1000, Hormann's PTRS above, float64 like numpy's) runs at numpy's speed with",
        "cryptographic randomness; its law is Poisson up to float64 rounding, not exactly.",
        "",
        "### Distributed-DP client encoding",
        "",
        "One client's vector (b = 20, n = 100, z = 1): rotate, clip, scale, conditional rounding,",
        "noise, reduce mod 2^b; against plain fixed-point quantisation of the same vector.",
        "",
        "| mechanism | d | D | encode (ms) | fixed-point (ms) | ratio | decode (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["what"] == "encoder":
            out.append(
                f"| {r['mechanism']} | {r['d']:,} | {r['padded_d']:,} | {r['encode_s'] * 1e3:.1f} "
                f"| "
                f"{r['fixed_point_encode_s'] * 1e3:.1f} | {r['encode_vs_fixed_point']:.1f} | "
                f"{r['decode_s'] * 1e3:.1f} |"
            )
    return "\n".join(out) + "\n"


def run(*, quick: bool = False) -> dict[str, Any]:
    n = 100_000 if quick else 1_000_000
    repeat = 3 if quick else 7
    rows = bench_samplers(n, repeat) + bench_encoder(1 << 14 if quick else 1_000_000, repeat)
    return {"suite": "dp", "quick": quick, "rows": rows, "table": _table(rows, quick=quick)}


def main(argv: list[str] | None = None) -> int:
    """The standalone script: print the table, write ``--json`` and ``--markdown``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 draws, d = 16,384")
    parser.add_argument("--json", metavar="PATH", help="write the result as JSON (parents created)")
    parser.add_argument(
        "--markdown", metavar="PATH", help="also write a markdown section here (parents created)"
    )
    args = parser.parse_args(argv)
    json_path = prepare_output_file(args.json, "--json") if args.json else None
    markdown_path = prepare_output_file(args.markdown, "--markdown") if args.markdown else None
    result = run(quick=args.quick)
    print(result["table"])
    if json_path is not None:
        json_path.write_text(json_text(result, default=str))
    if markdown_path is not None:
        command = "python benchmarks/bench_dp.py" + (" --quick" if args.quick else "")
        markdown_path.write_text(markdown(result, command))
        print(f"markdown written to {markdown_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
