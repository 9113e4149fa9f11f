"""Attacks that gather more than one quorum in one round: round-id reuse and the Paillier split.

* :func:`round_reuse_attack` (SecAgg): the server runs the same round id several times with
  the same identity keys, collecting in each execution the consistency signatures of the
  clients on one of the survivor lists of the partner-keys attack
  (:func:`~threat_models.attacks.lying_server.partner_keys_attack`); in the last execution it
  presents a full quorum for every per-client view. Stopped by ``refuse_round_reuse`` (each
  client's round log refuses the second execution, ``ReplayError``) and, without it, by
  ``fresh_signatures`` (the signatures bind each execution's fresh context).
* :func:`paillier_quorum_split`: two decryption quorums that share the colluding decryptors,
  one decrypting the product of every upload and one the product without the victim's; the
  difference is the victim's update. Stopped when the threshold counts the colluders as the
  threat model does (``2t - l > C``): the quorums then share an honest decryptor, which
  decrypts once per round (``AlreadyFinalizedError``). The weakened configuration is the
  threshold a floor count of the colluders gives (one where there are two).

Both drive the real client and decryptor state machines (``handle``), as the adversarial
tests do, and measure what the server recovered
(:class:`~threat_models.attacks.lying_server.ScenarioOutcome`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from protocols.masking.config import Hardening
from protocols.masking.driver import setup_round
from protocols.paillier.driver import setup_paillier_round
from protocols.paillier.messages import DecryptionRequest, PartialDecryptionMessage, Upload
from protocols.stages import Stage
from secagg.errors import SecAggError, ThresholdNotMetError
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.paillier import aggregate
from secagg.primitives.signing import IdentityKey
from secagg.primitives.threshold_paillier import (
    PartialDecryption,
    combine_partial_decryptions,
    partial_decrypt,
)
from threat_models.attacks.lying_server import (
    PREVIOUS_HARDENING,
    LyingServer,
    ScenarioOutcome,
    partner_keys_views,
)
from threat_models.model import ThreatModel
from threat_models.parameters import GraphKind, select_parameters

__all__ = ["round_reuse_attack", "paillier_quorum_split"]

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]
_BITS = 32
_ROUND = 4242


def _encode(updates: Mapping[int, F64], seed: int) -> tuple[FixedPointEncoder, dict[int, U64]]:
    bound = max(float(np.max(np.abs(v))) for v in updates.values())
    bound = float(2.0 ** np.ceil(np.log2(max(bound, 1e-12))))
    encoder = FixedPointEncoder.symmetric(bound, bits=_BITS, max_clients=len(updates))
    rng = np.random.default_rng(seed)
    return encoder, {
        c: encoder.encode(np.asarray(v, np.float64), rng=rng) for c, v in updates.items()
    }


def _outcome(
    encoder: FixedPointEncoder,
    truth: F64,
    got: F64 | None,
    refusals: Sequence[str],
    defense: str,
    note: str,
    victim: int,
) -> ScenarioOutcome:
    tolerance = 2.0 * encoder.quantum
    errors = tuple(sorted(set(refusals)))
    if errors:
        note = f"{note}; refused with {','.join(errors)}"
    target = f"client {victim}'s update"
    if got is None:
        return ScenarioOutcome(
            False, float("inf"), tolerance, target, 1, None, errors, defense, note
        )
    error = float(np.max(np.abs(got - truth)))
    return ScenarioOutcome(
        error <= tolerance, error, tolerance, target, 1, got, errors, defense, note
    )


def round_reuse_attack(
    updates: Mapping[int, F64],
    victim: int,
    *,
    weakened: bool,
    executions: int | None = None,
    seed: int = 0,
) -> ScenarioOutcome:
    """Reuse one round id to collect a consistency quorum for every partner-keys view.

    Weakened: the previous release's checks with the consistency quorum, verified signers
    and round-bound signatures, but neither the round log nor fresh signatures. SecAgg
    (complete graph), default threat model (malicious server). ``executions``: the most
    executions the server runs (default twice the cohort); it stops once every view has its
    quorum.
    """
    encoder, inputs = _encode(updates, seed)
    n = len(inputs)
    threat = ThreatModel()
    hardening = (
        replace(
            PREVIOUS_HARDENING,
            consistency_check=True,
            verified_survivors=True,
            round_bound_signatures=True,
        )
        if weakened
        else Hardening()
    )
    defense = (
        "consistency quorum, but no round log and no fresh signatures (baseline)"
        if weakened
        else "every check on (round log, fresh signatures)"
    )
    identities = {cid: IdentityKey.generate() for cid in inputs}
    quorum = select_parameters(n, threat, graph=GraphKind.COMPLETE).consistency_quorum

    def execution(round_id: int, hard: Hardening) -> LyingServer:
        runner = setup_round(
            inputs,
            bits=_BITS,
            protocol="secagg",
            threat_model=threat,
            hardening=hard,
            round_id=round_id,
            identities=identities,
        )
        server = LyingServer(runner)
        server.honest_setup()
        return server

    # the views of the last execution depend on the graph only (complete): known in advance
    scout = execution(1, Hardening.unhardened())
    scout.broadcast_keys()
    t = scout.config.threshold
    partners = sorted(scout.true_neighbours(victim))[:t]
    scout.forward_shares({victim: partners})
    views = partner_keys_views(scout, victim, partners)
    lists = {s for s, _ in views.values()}
    wanted = {s: set(s) - {victim} for s in lists}
    pool: dict[tuple[int, ...], dict[int, bytes]] = {}
    refusals: list[str] = []
    gathered = 0
    for _ in range((2 * n if executions is None else executions) - 1):
        if all(len(pool.get(s, {})) >= quorum for s in lists):
            break
        try:
            server = execution(_ROUND, hardening)
        except SecAggError as exc:  # the set-up stages already refuse a reused round
            refusals.append(type(exc).__name__)
            break
        server.broadcast_keys()
        server.forward_shares()
        plan: dict[int, tuple[int, ...]] = {}
        for u in server.ids:
            for s, missing in sorted(wanted.items(), key=lambda kv: -len(kv[1])):
                if u in missing and u in s:
                    plan[u] = s
                    missing.discard(u)
                    break
        server.consistency(plan)
        refusals += server.harvest.refusals.values()
        gathered += 1
        for s, sigs in server.signatures.items():
            pool.setdefault(s, {}).update(sigs)
    got: F64 | None = None
    try:
        server = execution(_ROUND, hardening)
    except SecAggError as exc:
        refusals.append(type(exc).__name__)
    else:
        server.add_signatures(pool)
        server.broadcast_keys()
        server.forward_shares({victim: partners})
        server.consistency({u: s for u, (s, _) in views.items()})
        server.unmask(views)
        refusals += server.harvest.refusals.values()
        words = server.unmask_one(victim)
        if words is not None:
            got = np.asarray(encoder.decode_sum(words, 1), dtype=np.float64)
    note = (
        f"{gathered} executions of the round id gathered signatures (a quorum of {quorum} "
        f"wanted for each of {len(lists)} survivor lists), then one more to unmask"
    )
    truth = np.asarray(updates[victim], dtype=np.float64)
    return _outcome(encoder, truth, got, refusals, defense, note, victim)


def paillier_quorum_split(
    updates: Mapping[int, F64],
    victim: int,
    *,
    weakened: bool,
    key_bits: int = 512,
    seed: int = 0,
) -> ScenarioOutcome:
    """Two decryption quorums sharing the colluding decryptors, with and without the victim.

    The clients are the decryptors, malicious server, colluding fraction 0.05 (at 30 clients:
    2 colluders). Weakened: the threshold a floor count gives (colluding fraction 0.03, one
    colluder). ``key_bits`` 512 is INSECURE, for speed (no check depends on it).
    """
    ids = sorted(updates)
    gamma = 0.03 if weakened else 0.05
    bound = max(float(np.max(np.abs(v))) for v in updates.values())
    bound = float(2.0 ** np.ceil(np.log2(max(bound, 1e-12))))
    encoder = FixedPointEncoder.symmetric(bound, bits=_BITS, max_clients=len(ids))
    setup = setup_paillier_round(
        {c: updates[c] for c in ids},
        round_id=90,
        seed=seed,
        threat_model=ThreatModel(colluding_fraction=gamma),
        encoder=encoder,
        key_bits=key_bits,
        hazmat_allow_weak_key=key_bits < 2048,
    )
    runner = setup.runner
    config = runner.config
    pk = config.public_key
    t = pk.threshold
    parties = sorted(config.decryptor_parties)
    colluders = [p for p in parties if p != victim][-ThreatModel().max_colluders(len(parties)) :]
    runner.run_until(Stage.MASKED_INPUT)
    runner.deliver_requests()
    uploads = {
        cid: m for cid, replies in runner.outbox.items() for m in replies if isinstance(m, Upload)
    }
    everyone = [uploads[c] for c in sorted(uploads)]
    without = [u for u in everyone if u.client_id != victim]
    honest = sorted((p for p in parties if p not in colluders), key=lambda p: p != victim)
    need = t - len(colluders)
    first, rest = honest[:need], honest[need:]
    overlap = max(0, need - len(rest))
    second = rest[:need] + first[len(first) - overlap :]
    errors: list[str] = []
    partials: dict[bool, list[PartialDecryption]] = {True: [], False: []}
    for with_victim, group, ups in ((True, first, everyone), (False, second, without)):
        for p in group:
            dec = runner.parties[p].decryptor
            if dec is None:
                continue
            try:
                if with_victim or p not in first:
                    for upload in ups:
                        dec.handle(upload)
                request = DecryptionRequest(
                    round_id=config.round_id,
                    recipient=p,
                    contributors=tuple(u.client_id for u in ups),
                )
                partials[with_victim] += [
                    m.partial
                    for m in dec.handle(request)
                    if isinstance(m, PartialDecryptionMessage)
                ]
            except SecAggError as exc:
                errors.append(type(exc).__name__)
    shares = {s.index: s for s in setup.shares}
    sums: dict[bool, U64 | None] = {}
    for with_victim, ups in ((True, everyone), (False, without)):
        product = aggregate(pk.paillier, config.packing, [u.vector for u in ups])
        got = partials[with_victim] + [
            partial_decrypt(
                shares[config.decryptor_parties[c]], product, prove=False, context=config.context
            )
            for c in colluders
        ]
        try:
            plain = combine_partial_decryptions(
                pk, product, got[:t], verify=False, context=config.context
            )
            sums[with_victim] = config.packing.unpack(
                plain, config.encoded_length, summands=len(ups)
            )
        except ThresholdNotMetError:
            errors.append("ThresholdNotMetError")
            sums[with_victim] = None
    recovered: F64 | None = None
    a, b = sums[True], sums[False]
    if a is not None and b is not None:
        mask = np.uint64((1 << encoder.bits) - 1)
        diff = (a.astype(np.uint64) - b.astype(np.uint64)) & mask
        recovered = np.asarray(encoder.decode_sum(diff, 1), dtype=np.float64)
    defense = (
        f"threshold t={t} from a floor count of the colluders (baseline)"
        if weakened
        else f"threshold t={t} with the colluders counted by the threat model"
    )
    note = (
        f"{len(parties)} decryptors, {len(colluders)} colluding; quorums of {len(first)} and "
        f"{len(second)} honest decryptors ({overlap} in both), key {key_bits} bits"
    )
    truth = np.asarray(updates[victim], dtype=np.float64)
    return _outcome(encoder, truth, recovered, errors, defense, note, victim)
