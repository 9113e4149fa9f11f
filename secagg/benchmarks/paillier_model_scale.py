"""Paillier at model scale: one real round, stage by stage, and what lowers decryption's cost.

One round of :func:`protocols.paillier.driver.setup_paillier_round` (the round
``protocols.simulate(protocol="paillier")`` runs), 3 clients, a separate 3-of-5 committee,
a dealt 2048-bit key, a malicious server (signed uploads, proofs of plaintext knowledge and
of correct partial decryption), ``d`` values quantised to 16 bits. Each party's work is
timed where it happens (wall-clock and CPU time of this process): the clients' encryption
with its proof, the server's and each decryptor's verification and aggregation of the
uploads, each decryptor's partial decryption with its proof, the server's verification of
those proofs, the combination and the decoding. Every stage is per-ciphertext work, so the
figures extrapolate linearly in ``d`` (``--model-d`` below the model's 1,000,000 values
says so in the table).

Decryption cost per value, before and after: the same slice of the round's aggregate is
partially decrypted on one process (the only way before ``workers=``) and on ``workers``
processes, interleaved, twice; the least-disturbed wall-clock sample of each is compared.
CPU columns count this process and its (forked, reaped) workers. A speed-up needs free
cores: Linux shares the CPUs fairly between sessions (autogroups), so while other sessions
keep both cores of this machine busy, two workers get no more CPU than one process.

Damgard-Jurik rows: one partial decryption with ``s > 1`` is one exponentiation modulo
``n^(s+1)`` with an exponent of about ``(s+1)|n|`` bits, for ``s|n|`` bits of plaintext
(``floor((s|n| - 1) / slot_bits)`` values): measured with ``gmpy2.powmod`` on random
operands of those sizes and divided by the values it would carry.
"""

from __future__ import annotations

import math
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import gmpy2
import numpy as np
from tqdm import tqdm

import protocols.paillier.server as server_module
from protocols.paillier.driver import setup_paillier_round
from protocols.paillier.messages import (
    DecryptionRequest,
    PaillierMessage,
    PartialDecryptionMessage,
    Upload,
    UploadRequest,
)
from secagg.benchmarks._timing import interleaved
from secagg.benchmarks.targets import Target, judge
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.paillier import EncryptedVector, PaillierAggregator
from secagg.primitives.threshold_paillier import (
    KeyShare,
    ThresholdPublicKey,
    Workers,
    deal_threshold_key,
    decryption_workers,
    partial_decrypt,
)
from threat_models.model import ThreatModel

__all__ = [
    "MODEL_D",
    "MEASURED_D",
    "LOWER_COST_TARGET",
    "damgard_jurik_rows",
    "model_scale_table",
    "parallel_speedup",
    "run_model_scale",
]

MODEL_D = 1_000_000
"""The model size the stages are reported (or extrapolated) at."""

MEASURED_D = 100_000
"""Values the default ``--model-scale`` run measures (about 2 CPU minutes)."""

LOWER_COST_TARGET = Target(1.0, True, "< 1x (lower)")
"""Decryption cost per value after / before: the issue asks to bring it down."""

CLIENTS = 3
COMMITTEE = 5
THRESHOLD = 3
KEY_BITS = 2048
VALUE_BITS = 16
SLICE_CIPHERTEXTS = 400


def _wall() -> float:
    return time.perf_counter()


def _cpu() -> float:
    # this process and its reaped children: forked decryption workers are reaped when their
    # pool shuts down, at the end of each partial decryption
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class _Stage:
    wall: float = 0.0
    cpu: float = 0.0
    calls: int = 0


@dataclass
class _Probe:
    """Wall and CPU seconds per stage name."""

    stages: dict[str, _Stage] = field(default_factory=dict)

    def add(self, name: str, wall: float, cpu: float) -> None:
        stage = self.stages.setdefault(name, _Stage())
        stage.wall += wall
        stage.cpu += cpu
        stage.calls += 1

    def timed(self, name: Callable[..., str | None], fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed under the stage ``name(*args)`` returns (untimed for ``None``)."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            label = name(*args)
            if label is None:
                return fn(*args, **kwargs)
            wall, cpu = _wall(), _cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(label, _wall() - wall, _cpu() - cpu)

        return wrapper


_PER_PARTY = {
    "client encryption + proof + signature (per client)": CLIENTS,
    "decryptor verification + aggregation of the uploads (per decryptor)": COMMITTEE,
    "partial decryption + proof (per decryptor)": THRESHOLD,
}


def _party_stage(is_client: bool) -> Callable[[PaillierMessage], str | None]:
    def name(message: PaillierMessage) -> str | None:
        if isinstance(message, UploadRequest) and is_client:
            return "client encryption + proof + signature (per client)"
        if isinstance(message, Upload):
            return "decryptor verification + aggregation of the uploads (per decryptor)"
        if isinstance(message, DecryptionRequest):
            return "partial decryption + proof (per decryptor)"
        return None

    return name


def _server_stage(message: PaillierMessage) -> str | None:
    if isinstance(message, Upload):
        return "server verification + aggregation of the uploads"
    if isinstance(message, PartialDecryptionMessage):
        return "server verification of the partial decryptions' proofs"
    return None


_COMBINE = "combine_partial_decryptions"  # the server's name for it, timed in place


@contextmanager
def _timed_combination(probe: _Probe) -> Iterator[None]:
    original = getattr(server_module, _COMBINE)
    setattr(
        server_module,
        _COMBINE,
        probe.timed(lambda *_: "combination of the partial decryptions", original),
    )
    try:
        yield
    finally:
        setattr(server_module, _COMBINE, original)


def parallel_speedup(
    share: KeyShare, vector: EncryptedVector, workers: int, *, repeat: int = 2
) -> tuple[float, float, float, float]:
    """One partial decryption of ``vector`` (no proof) on one process and on ``workers``
    processes, interleaved ``repeat`` times: least-disturbed ``(wall_1, wall_w, cpu_1,
    cpu_w)`` in seconds, CPU including the workers'."""
    cpu: list[list[float]] = [[], []]

    def timed(index: int, n_workers: int) -> Callable[[], None]:
        def run() -> None:
            start = _cpu()
            partial_decrypt(share, vector, prove=False, workers=n_workers)
            cpu[index].append(_cpu() - start)

        return run

    samples = interleaved([timed(0, 1), timed(1, workers)], repeat, clock=_wall, warm_up=False)
    return min(samples[0]), min(samples[1]), min(cpu[0]), min(cpu[1])


def damgard_jurik_rows(
    public_key: ThresholdPublicKey, slot_bits: int, *, repeat: int = 3, bases: int = 4
) -> list[dict[str, Any]]:
    """Partial-decryption cost per value for Damgard-Jurik ``s = 1, 2, 3`` (measured powmods)."""
    n = gmpy2.mpz(public_key.n)
    delta_bits = (2 * public_key.delta).bit_length()
    bits = public_key.n.bit_length()
    operands = {}
    for s in (1, 2, 3):
        modulus = n ** (s + 1)
        exponent = gmpy2.mpz(secrets.randbits((s + 1) * bits + delta_bits))
        operands[s] = (modulus, exponent, [secrets.randbelow(int(modulus)) for _ in range(bases)])

    def work(s: int) -> Callable[[], None]:
        modulus, exponent, xs = operands[s]

        def powmods() -> None:
            for x in xs:
                gmpy2.powmod(x, exponent, modulus)

        return powmods

    samples = interleaved([work(s) for s in (1, 2, 3)], repeat, clock=_cpu, warm_up=False)
    per_value = {}
    rows = []
    for s, times in zip((1, 2, 3), samples, strict=True):
        slots = (s * bits - 1) // slot_bits
        per_value[s] = min(times) / bases / slots
        rows.append(
            {
                "key_bits": bits,
                "metric": (
                    f"Damgard-Jurik s = {s}: partial decryption (us/value; "
                    f"{slots} values per ciphertext), ratio to s = 1"
                ),
                "ours": per_value[s] * 1e6,
                "peer": per_value[1] * 1e6,
                "unit": "us",
                "ratio": per_value[s] / per_value[1],
                "s": s,
                "slots_per_ciphertext": slots,
                "powmod_ms": min(times) / bases * 1e3,
            }
        )
    return rows


def run_model_scale(
    *, d: int = MEASURED_D, workers: Workers = "auto", progress: bool = True
) -> dict[str, Any]:
    """One real round at ``d`` values; per-stage rows, reported at :data:`MODEL_D` values."""
    processes = decryption_workers(workers)
    tqdm.monitor_interval = 0  # no monitor thread: decryption workers can then be forked
    scale = MODEL_D / d
    probe = _Probe()
    wall, cpu = _wall(), _cpu()
    public_key, shares = deal_threshold_key(
        n_decryptors=COMMITTEE, threshold=THRESHOLD, key_bits=KEY_BITS
    )
    probe.add("key generation (dealer, safe primes; one-off)", _wall() - wall, _cpu() - cpu)
    rng = np.random.default_rng(0)
    updates = {i: rng.uniform(-1.0, 1.0, d) for i in range(CLIENTS)}
    encoder = FixedPointEncoder.symmetric(
        1.0,
        bits=VALUE_BITS + (CLIENTS - 1).bit_length(),
        max_clients=CLIENTS,
        levels=(1 << VALUE_BITS) - 1,
    )
    setup = setup_paillier_round(
        updates,
        key=(public_key, shares),
        committee_size=COMMITTEE,
        threat_model=ThreatModel(colluding_fraction=0.0, dropout_fraction=0.0),
        encoder=encoder,
        seed=0,
        record_view=False,
        lazy_decryption=True,
        decryption_workers=processes,
    )
    runner = setup.runner
    uploads: list[EncryptedVector] = []
    for party in runner.parties.values():
        party.handle = probe.timed(  # type: ignore[method-assign]
            _party_stage(party.client is not None), party.handle
        )
    server = runner.server
    server_handle = server.handle

    def handle(message: PaillierMessage) -> list[PaillierMessage]:
        if isinstance(message, Upload):
            uploads.append(message.vector)
        return server_handle(message)

    server.handle = probe.timed(_server_stage, handle)  # type: ignore[method-assign]
    server.finalize = probe.timed(  # type: ignore[method-assign]
        lambda *_: "combination + decoding", server.finalize
    )
    quiet = not progress or not sys.stderr.isatty()
    units = CLIENTS * (COMMITTEE + 2) + THRESHOLD
    round_wall, round_cpu = _wall(), _cpu()
    with _timed_combination(probe):
        if quiet:
            while not runner.finished:
                runner.step()
        else:
            with tqdm(total=units, desc="paillier round", unit="op") as bar:
                runner.progress_bar = bar
                while not runner.finished:
                    runner.step()
                runner.progress_bar = None
    probe.add("whole round (after key generation)", _wall() - round_wall, _cpu() - round_cpu)
    total = runner.server.result.aggregate
    expected = np.sum(list(updates.values()), axis=0)
    error = float(np.max(np.abs(total - expected)))
    if error > CLIENTS * 2.0 / ((1 << VALUE_BITS) - 1):
        raise RuntimeError(f"model-scale round decoded a wrong aggregate (error {error})")
    stages = probe.stages
    both = stages.pop("combination + decoding")
    combine = stages["combination of the partial decryptions"]
    stages["decoding (unpacking, dequantising)"] = _Stage(
        both.wall - combine.wall, both.cpu - combine.cpu, both.calls
    )

    packing = runner.config.packing
    aggregator = PaillierAggregator(public_key.paillier, packing, runner.config.encoded_length)
    for vector in uploads:
        aggregator.add(vector)
    aggregate = aggregator.result()
    count = min(SLICE_CIPHERTEXTS, len(aggregate.ciphertexts))
    piece = EncryptedVector(aggregate.key_id, count, aggregate.ciphertexts[:count])
    before, after, cpu_before, cpu_after = parallel_speedup(shares[0], piece, processes)
    values = count * packing.slots
    rows: list[dict[str, Any]] = []
    extrapolated = d != MODEL_D
    for name, stage in stages.items():
        calls = _PER_PARTY.get(name, 1)
        fixed = name.startswith("key generation")
        factor = 1.0 if fixed else scale
        rows.append(
            {
                "key_bits": KEY_BITS,
                "metric": name,
                "wall_s": stage.wall / calls * factor,
                "cpu_s": stage.cpu / calls * factor,
                "us_per_value_wall": None if fixed else stage.wall / calls / d * 1e6,
                "parties": calls,
            }
        )
    ratio_row: dict[str, Any] = {
        "key_bits": KEY_BITS,
        "metric": (
            f"partial decryption wall us/value, workers = {processes} (after) vs 1 (before), "
            f"{count} ciphertexts"
        ),
        "before_us_per_value": before / values * 1e6,
        "after_us_per_value": after / values * 1e6,
        "ratio": after / before,
        "speedup": before / after,
        "cpu_before_us_per_value": cpu_before / values * 1e6,
        "cpu_after_us_per_value": cpu_after / values * 1e6,
        "load_average_1min": os.getloadavg()[0],
    }
    judge(ratio_row, after / before, LOWER_COST_TARGET, "decryption cost per value after/before")
    return {
        "suite": "paillier-model-scale",
        "d_measured": d,
        "d_reported": MODEL_D,
        "extrapolated": extrapolated,
        "workers": processes,
        "clients": CLIENTS,
        "committee": f"{THRESHOLD}-of-{COMMITTEE}",
        "slots_per_ciphertext": packing.slots,
        "ciphertexts": math.ceil(runner.config.encoded_length / packing.slots),
        "max_abs_error": error,
        "rows": rows,
        "ratio_row": ratio_row,
        "dj_rows": damgard_jurik_rows(public_key, packing.slot_bits),
    }


def model_scale_table(result: dict[str, Any]) -> str:
    """The stages at :data:`MODEL_D` values, the before/after row and the Damgard-Jurik rows."""
    how = (
        f"extrapolated linearly from d = {result['d_measured']:,}"
        if result["extrapolated"]
        else "measured"
    )
    lines = [
        f"one Paillier round, {result['clients']} clients, {result['committee']} committee, "
        f"{KEY_BITS} bits, d = {result['d_reported']:,} ({how}); decryptors on "
        f"{result['workers']} process(es); {result['slots_per_ciphertext']} values/ciphertext",
        f"{'stage':<72} {'wall s':>9} {'CPU s':>9} {'us/value':>9}",
    ]
    for r in result["rows"]:
        per_value = "-" if r["us_per_value_wall"] is None else f"{r['us_per_value_wall']:.3g}"
        lines.append(f"{r['metric']:<72} {r['wall_s']:>9.1f} {r['cpu_s']:>9.1f} {per_value:>9}")
    r = result["ratio_row"]
    lines.append(
        f"{r['metric']}: before {r['before_us_per_value']:.0f}, after "
        f"{r['after_us_per_value']:.0f} -> {r['ratio']:.2f}x (speed-up {r['speedup']:.2f}x), "
        f"target {r['target']}: {'met' if r['target_met'] else 'MISSED'}; CPU us/value "
        f"{r['cpu_before_us_per_value']:.0f} vs {r['cpu_after_us_per_value']:.0f} "
        f"(workers included); load average {r['load_average_1min']:.2f}"
    )
    for r in result["dj_rows"]:
        lines.append(f"{r['metric']}: {r['ours']:.0f} us/value, {r['ratio']:.2f}x")
    return "\n".join(lines)
