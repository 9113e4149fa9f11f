"""In-process driver of a Paillier round: round setup, one round to the end, simulation.

Parties are driven like the masking protocols' (``start`` / ``handle`` / ``advance`` on the
server, ``handle`` on the others) by the in-process transport
:class:`~protocols.paillier.runner.PaillierRoundRunner`. :func:`setup_paillier_round` builds the
configuration, the key (dealt, given, or generated
by the decryptors themselves, :mod:`protocols.paillier.keygen`) and the parties;
:func:`run_round` runs one round to the end (what
``protocols.simulate(..., protocol="paillier")`` runs) and :func:`simulation_result` reports
it as every protocol's round is reported.

Robustness: a reply the server refuses (an upload or nonce that fails verification, a
partial decryption that fails its proof) leaves its sender out, it counts as dropped. A
client that vanishes before or at ``masked_input`` is simply absent; a decryptor that
vanishes sends no partial decryption, which is tolerated down to the threshold ``t``;
below it the round aborts with :class:`~secagg.errors.ThresholdNotMetError`.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from protocols.inputs import (
    DEFAULT_BITS,
    client_weights,
    default_encoder,
    parse_dropouts,
    weight_encoder,
)
from protocols.paillier.client import PaillierClient
from protocols.paillier.config import PaillierHardening, PaillierRoundConfig
from protocols.paillier.decryptor import PaillierDecryptor
from protocols.paillier.encoding import WeightedEncoder, packing_for
from protocols.paillier.keygen import KeyGeneration, generate_distributed_key
from protocols.paillier.messages import (
    PaillierMessage,
)
from protocols.paillier.party import PaillierParty
from protocols.paillier.runner import PaillierRoundRunner
from protocols.paillier.server import STAGES, PaillierServer
from protocols.result import SimulationResult
from protocols.round_log import RoundLog
from protocols.stages import Stage
from secagg.errors import CapacityError, InvalidParameterError
from secagg.primitives.encoding import VectorEncoder
from secagg.primitives.paillier import DEFAULT_KEY_BITS, Randomness
from secagg.primitives.signing import IdentityKey
from secagg.primitives.threshold_paillier import (
    KeyShare,
    ThresholdPublicKey,
    Workers,
    deal_threshold_key,
)
from secagg.primitives.threshold_paillier import decryption_workers as resolve_workers
from secagg.validation import is_int
from threat_models.model import ThreatModel
from threat_models.paillier import PaillierParameters, paillier_parameters

__all__ = [
    "PaillierRoundOutcome",
    "PaillierSetup",
    "setup_paillier_round",
    "run_round",
    "simulation_result",
]

F64 = npt.NDArray[np.float64]

_NO_UPLOAD_STAGES = frozenset(
    {Stage.ADVERTISE_KEYS, Stage.GRAPH_SEED, Stage.SHARE_KEYS, Stage.MASKED_INPUT}
)
"""Dropout stages at which a client never uploads (the later ones: it sends no partial)."""


@dataclass(frozen=True)
class PaillierRoundOutcome:
    """What :func:`run_round` returns: the decoded sum, its contributors, the server's view."""

    aggregate: F64
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    server_view: tuple[PaillierMessage, ...]
    config: PaillierRoundConfig
    parameters: PaillierParameters
    weight_sum: float | None = None


@dataclass(frozen=True)
class PaillierSetup:
    """A round ready to run: the runner, its parameters and the parties' secrets (for attacks)."""

    runner: PaillierRoundRunner
    parameters: PaillierParameters
    identities: Mapping[int, IdentityKey]
    shares: tuple[KeyShare, ...] = field(repr=False)
    ids: tuple[int, ...]
    decryptor_identities: Mapping[int, IdentityKey] = field(default_factory=dict)


def _round_key(
    keygen: KeyGeneration,
    key: tuple[ThresholdPublicKey, Sequence[KeyShare]] | None,
    params: PaillierParameters,
    committee: Mapping[int, IdentityKey],
    *,
    key_bits: int,
    hazmat_allow_weak_key: bool,
    wire: bool,
) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
    """The round's key: the given one (checked against ``params``), distributed or dealt."""
    if key is None and keygen is KeyGeneration.DISTRIBUTED:
        distributed = generate_distributed_key(
            committee,
            threshold=params.threshold,
            key_bits=key_bits,
            hazmat_allow_weak_key=hazmat_allow_weak_key,
            restart=False,
            wire=wire,
        )
        shares = tuple(sorted(distributed.shares.values(), key=lambda share: share.index))
        return distributed.public_key, shares
    if key is None:
        public_key, dealt = deal_threshold_key(
            n_decryptors=params.n_decryptors,
            threshold=params.threshold,
            key_bits=key_bits,
            hazmat_allow_weak_key=hazmat_allow_weak_key,
        )
        return public_key, tuple(dealt)
    public_key, shares = key[0], tuple(key[1])
    if not isinstance(public_key, ThresholdPublicKey) or len(shares) != public_key.n_decryptors:
        raise InvalidParameterError("key must be (ThresholdPublicKey, all of its shares)")
    if public_key.n_decryptors != params.n_decryptors:
        raise InvalidParameterError(
            f"the key has {public_key.n_decryptors} shares, the round needs {params.n_decryptors}"
        )
    if public_key.threshold < params.threshold:
        raise InvalidParameterError(
            f"the key's threshold {public_key.threshold} is below the threat model's "
            f"minimum {params.threshold}"
        )
    return public_key, shares


def _staged_dropouts(
    dropouts: Mapping[str | Stage, Iterable[int]] | None,
    ids: tuple[int, ...],
    decryptor_dropouts: Iterable[int],
    committee_size: int | None,
) -> dict[Stage, set[int]]:
    """The runner's dropouts: who vanishes before its nonce, its upload, its partial."""
    staged: dict[Stage, set[int]] = {stage: set() for stage in STAGES}
    for stage, dropped in parse_dropouts(dropouts, stages=tuple(Stage), cohort=ids).items():
        staged[Stage.MASKED_INPUT if stage in _NO_UPLOAD_STAGES else Stage.UNMASKING] |= dropped
        if stage is Stage.ADVERTISE_KEYS:
            # a client that is also a decryptor vanishes before it commits a nonce
            staged[Stage.ADVERTISE_KEYS] |= dropped
    gone = tuple(decryptor_dropouts)
    if gone:
        if committee_size is None:
            raise InvalidParameterError("decryptor_dropouts needs a separate committee")
        if not set(gone) <= set(range(1, committee_size + 1)):
            raise InvalidParameterError(
                "decryptor_dropouts must be committee indices 1..committee_size"
            )
        staged[Stage.UNMASKING] |= {ids[-1] + index for index in gone}
    return staged


def setup_paillier_round(
    updates: Mapping[int, npt.ArrayLike],
    *,
    dropouts: Mapping[str | Stage, Iterable[int]] | None = None,
    seed: int | None = None,
    threat_model: ThreatModel | None = None,
    encoder: VectorEncoder | None = None,
    bits: int = DEFAULT_BITS,
    round_id: int | None = None,
    wire: bool = True,
    record_view: bool = True,
    key: tuple[ThresholdPublicKey, Sequence[KeyShare]] | None = None,
    key_bits: int = DEFAULT_KEY_BITS,
    hazmat_allow_weak_key: bool = False,
    committee_size: int | None = None,
    decryptor_dropouts: Iterable[int] = (),
    randomness: Randomness | None = None,
    hardening: PaillierHardening | None = None,
    lazy_decryption: bool = False,
    key_generation: KeyGeneration | str = KeyGeneration.DEALER,
    round_logs: Mapping[int, RoundLog] | None = None,
    decryption_workers: Workers = 1,
) -> PaillierSetup:
    """Build the config, the parties and a :class:`PaillierRoundRunner` for one round.

    ``updates`` are the (already weighted) float inputs; see :func:`run_round` for the other
    arguments. Committee members (``committee_size``) get the party ids following the
    largest client id and, in signed rounds, identity keys of their own. ``round_logs``
    (party id -> :class:`~protocols.round_log.RoundLog`) replaces a party's default log
    (the process-wide log of its identity key). ``decryption_workers`` is each decryptor's
    ``workers`` (:class:`~protocols.paillier.decryptor.PaillierDecryptor`).

    Without ``key``, ``key_generation`` says who makes the key: ``"dealer"`` (default, the
    trusted dealer of :func:`~secagg.primitives.threshold_paillier.deal_threshold_key`) or
    ``"distributed"`` (the decryptors themselves, :mod:`protocols.paillier.keygen`; at
    least 3 decryptors; a member that vanishes during key generation raises
    :class:`~secagg.errors.RoundRestartError` naming it). ``randomness`` defaults to
    ``FIXED_BASE`` for a dealt key and ``STANDARD`` for a distributed one (which has no
    checked fixed base).
    """
    workers = resolve_workers(decryption_workers)  # refused before any key is made
    try:
        keygen = KeyGeneration(key_generation)
    except ValueError:
        raise InvalidParameterError(
            f"key_generation must be 'dealer' or 'distributed', got {key_generation!r}"
        ) from None
    if not isinstance(updates, Mapping) or len(updates) < 2:
        raise InvalidParameterError("updates must map at least two client ids to vectors")
    ids = tuple(sorted(updates))
    if not all(is_int(i) and 0 <= i < 1 << 63 for i in ids):
        raise InvalidParameterError("client ids must be ints in [0, 2^63)")
    vectors = {i: np.asarray(updates[i], dtype=np.float64) for i in ids}
    d = vectors[ids[0]].size
    if d < 1 or any(v.ndim != 1 or v.size != d for v in vectors.values()):
        raise InvalidParameterError("updates must be non-empty 1-D vectors of one length")
    n = len(ids)
    if encoder is None:
        encoder = default_encoder(vectors.values(), bits=bits, max_clients=n)
    if encoder.max_clients < n:
        raise CapacityError(
            f"the encoder sums at most {encoder.max_clients} clients, the cohort has {n}"
        )
    threat = ThreatModel() if threat_model is None else threat_model
    params = paillier_parameters(
        n, threat, n_decryptors=committee_size, max_clients=encoder.max_clients
    )
    if committee_size is None:
        decryptor_parties = {cid: index for index, cid in enumerate(ids, start=1)}
    else:
        decryptor_parties = {ids[-1] + index: index for index in range(1, committee_size + 1)}
    signed = params.signed_contributions
    identities = {i: IdentityKey.generate() for i in ids} if signed else {}
    if not signed:
        decryptor_identities: dict[int, IdentityKey] = {}
    elif committee_size is None:
        decryptor_identities = dict(identities)
    else:
        decryptor_identities = {pid: IdentityKey.generate() for pid in decryptor_parties}
    # the committee's identity keys are the PKI of a distributed key generation (fresh ones
    # when the round itself is unsigned: key generation always signs)
    keygen_identities: Mapping[int, IdentityKey] = decryptor_identities
    if key is None and keygen is KeyGeneration.DISTRIBUTED and not keygen_identities:
        keygen_identities = {pid: IdentityKey.generate() for pid in decryptor_parties}
    public_key, shares = _round_key(
        keygen,
        key,
        params,
        keygen_identities,
        key_bits=key_bits,
        hazmat_allow_weak_key=hazmat_allow_weak_key,
        wire=wire,
    )
    packing = packing_for(public_key, encoder)
    if randomness is None:
        randomness = (
            Randomness.STANDARD if public_key.encryption_base is None else Randomness.FIXED_BASE
        )
    logs = dict(round_logs or {})
    if not all(isinstance(v, RoundLog) for v in logs.values()):
        raise InvalidParameterError("round_logs must map party ids to RoundLog objects")
    config = PaillierRoundConfig(
        round_id=secrets.randbits(63) if round_id is None else round_id,
        public_key=public_key,
        encoder=encoder,
        packing=packing,
        length=d,
        min_aggregate_size=params.min_aggregate_size,
        roster={i: identities[i].public_bytes if identities else b"" for i in ids},
        decryptors=decryptor_parties,
        decryptor_keys={pid: k.public_bytes for pid, k in decryptor_identities.items()},
        signed_contributions=params.signed_contributions,
        plaintext_proofs=params.plaintext_proofs,
        decryption_proofs=params.decryption_proofs,
        randomness=randomness,
    )
    staged = _staged_dropouts(dropouts, ids, decryptor_dropouts, committee_size)
    rng = np.random.default_rng(seed)
    checks = PaillierHardening() if hardening is None else hardening
    by_index = {s.index: s for s in shares}
    parties: dict[int, PaillierParty] = {}
    for pid in sorted(set(ids) | set(decryptor_parties)):
        client = (
            PaillierClient(
                config,
                pid,
                identities.get(pid),
                update=vectors[pid],
                rng=rng,
                round_log=logs.get(pid),
            )
            if pid in vectors
            else None
        )
        decryptor = (
            PaillierDecryptor(
                config,
                by_index[decryptor_parties[pid]],
                identity_key=decryptor_identities.get(pid),
                hardening=checks,
                round_log=logs.get(pid),
                workers=workers,
            )
            if pid in decryptor_parties
            else None
        )
        parties[pid] = PaillierParty(client, decryptor)
    runner = PaillierRoundRunner(
        PaillierServer(config),
        parties,
        dropouts=staged,
        wire=wire,
        record_view=record_view,
        lazy_decryption=lazy_decryption,
    )
    return PaillierSetup(
        runner=runner,
        parameters=params,
        identities=identities,
        shares=tuple(shares),
        ids=ids,
        decryptor_identities=decryptor_identities,
    )


def run_round(
    updates: Mapping[int, npt.ArrayLike],
    *,
    dropouts: Mapping[str | Stage, Iterable[int]] | None = None,
    seed: int | None = None,
    threat_model: ThreatModel | None = None,
    encoder: VectorEncoder | None = None,
    bits: int = DEFAULT_BITS,
    weights: Mapping[int, float] | None = None,
    max_weight: float | None = None,
    round_id: int | None = None,
    wire: bool = True,
    record_view: bool = True,
    key: tuple[ThresholdPublicKey, Sequence[KeyShare]] | None = None,
    key_bits: int = DEFAULT_KEY_BITS,
    hazmat_allow_weak_key: bool = False,
    committee_size: int | None = None,
    decryptor_dropouts: Iterable[int] = (),
    randomness: Randomness | None = None,
    progress: bool = False,
    hardening: PaillierHardening | None = None,
    key_generation: KeyGeneration | str = KeyGeneration.DEALER,
    decryption_workers: Workers = 1,
) -> PaillierRoundOutcome:
    """Run one Paillier round in-process (what ``protocols.simulate(protocol="paillier")`` runs).

    Args:
        updates: client id -> 1-D float update (all of one length).
        dropouts: stage name (or ``Stage``) -> client ids that vanish at that stage. At
            ``advertise_keys`` a client never uploads and, if it is a decryptor, commits no
            nonce; at ``graph_seed``, ``share_keys`` or ``masked_input`` it never uploads (and
            never decrypts); at ``consistency_check`` or ``unmasking`` it has uploaded but
            sends no partial decryption.
        seed: seeds the *stochastic rounding* only (simulation data); keys, encryption
            randomness and proofs always use the OS CSPRNG.
        threat_model: adversary (default ``ThreatModel()``: malicious server); decides the
            threshold, the minimum aggregate size, signatures and proofs
            (:func:`threat_models.paillier.paillier_parameters`).
        encoder: quantiser; default a ``FixedPointEncoder`` of ``bits`` bits on ``[-B, B]``,
            ``B`` the smallest power of two bounding the (weighted) inputs, for the cohort.
        bits: ring bits of the default encoder (32, as for the masking protocols).
        weights: client id -> non-negative weight: each client encrypts ``[w x, w]`` so that
            the server learns ``sum w x`` and ``sum w`` only; ``max_weight`` bounds a weight
            (default the largest rounded up to a power of two).
        max_weight: see ``weights``.
        round_id: binds signatures and proofs (default a random 63-bit id); each party
            takes part in one execution of a round id only (its round log).
        wire: pass every message through its binary encoding (default True).
        record_view: keep the server's view (default True).
        key: a dealt ``(public key, shares)`` to reuse (one key per training run); its
            ``n_decryptors`` must match and its threshold be at least the derived one.
            Without it a fresh key of ``key_bits`` is made as ``key_generation`` says.
        key_bits: modulus size for a fresh key (3072 by default).
        hazmat_allow_weak_key: allow ``key_bits < 2048`` -- INSECURE, tests only.
        committee_size: ``None``: the clients are the decryptors (the ``i``-th smallest id
            holds share ``i``); otherwise a separate committee of this size.
        decryptor_dropouts: committee indices (1-based) that vanish before decrypting.
        randomness: encryption randomness (default ``FIXED_BASE`` for a dealt key,
            ``STANDARD`` for a distributed one).
        progress: show a progress bar through the round -- encrypting uploads, verifying
            them, decryption shares (only on a terminal).
        hardening: the decryptors' checks (default all on; ``PaillierHardening.unhardened()``
            only to demonstrate attacks).
        key_generation: ``"dealer"`` (default): a trusted dealer makes the key and must
            forget the factorisation; ``"distributed"``: the decryptors generate it among
            themselves (:mod:`protocols.paillier.keygen`, at least 3 decryptors, an honest
            majority of them, no dealer). See :mod:`threat_models.paillier` for what each
            trusts.
        decryption_workers: processes each decryptor's partial decryption runs on (a
            positive int or ``"auto"``: the usable CPUs); default 1. Decryptors are asked one
            at a time until ``t`` partials are in, so each uses every worker in turn: on one
            machine this is as fast as running the committee's decryptions side by side.

    Raises:
        RoundRestartError: a decryptor vanished during distributed key generation.
        ThresholdNotMetError: fewer contributions than the minimum aggregate size, or fewer
            decryptors than the threshold.
        InfeasibleThreatModelError: the threat model admits no parameters.
        CapacityError: more clients than the encoder sums.
        InvalidParameterError, EncodingError: malformed inputs.
    """
    if not isinstance(updates, Mapping) or len(updates) < 2:
        raise InvalidParameterError("updates must map at least two client ids to vectors")
    ids = sorted(updates)
    vectors = {i: np.asarray(updates[i], dtype=np.float64) for i in ids}
    ws: dict[int, float] = {}
    weight_coder = None
    if weights is not None:
        ws = client_weights(weights, ids)
        vectors = {i: vectors[i] * ws[i] for i in ids}
        if encoder is None:
            encoder = default_encoder(vectors.values(), bits=bits, max_clients=len(ids))
        weight_coder = weight_encoder(
            ws, max_weight=max_weight, bits=encoder.bits, max_clients=len(ids)
        )
        encoder = WeightedEncoder(encoder, weight_coder)
        vectors = {i: np.concatenate([vectors[i], [ws[i]]]) for i in ids}
    setup = setup_paillier_round(
        vectors,
        dropouts=dropouts,
        seed=seed,
        threat_model=threat_model,
        encoder=encoder,
        bits=bits,
        round_id=round_id,
        wire=wire,
        record_view=record_view,
        key=key,
        key_bits=key_bits,
        hazmat_allow_weak_key=hazmat_allow_weak_key,
        committee_size=committee_size,
        decryptor_dropouts=decryptor_dropouts,
        randomness=randomness,
        hardening=hardening,
        lazy_decryption=True,
        key_generation=key_generation,
        decryption_workers=decryption_workers,
    )
    runner = setup.runner
    quiet = not progress or not sys.stderr.isatty()
    # work units: each upload encrypted (clients), verified by the server and by every
    # committee member, and the threshold's decryption shares
    pk = runner.config.public_key
    units = len(ids) * (pk.n_decryptors + 2) + pk.threshold
    if quiet:  # no bar object at all: tqdm starts a monitor thread for every bar
        while not runner.finished:
            runner.step()
    else:
        with tqdm(total=units, desc="paillier round", unit="op", leave=False) as bar:
            runner.progress_bar = bar
            while not runner.finished:
                runner.step()
            runner.progress_bar = None
    result = runner.server.result
    total = result.aggregate
    weight_sum = None
    if weight_coder is not None:
        weight_sum = float(total[-1])
        total = total[:-1]
    return PaillierRoundOutcome(
        aggregate=np.asarray(total, dtype=np.float64),
        survivors=result.survivors,
        dropped=tuple(i for i in ids if i not in result.survivors),
        server_view=tuple(runner.server_view),
        config=runner.config,
        parameters=setup.parameters,
        weight_sum=weight_sum,
    )


def simulation_result(outcome: PaillierRoundOutcome) -> SimulationResult:
    """A finished Paillier round as ``protocols.simulate`` reports every protocol's.

    ``details`` carries the round id, the committee (threshold, decryptors, minimum
    aggregate size), the key (bits, dealer or distributed), the packing (ring bits, slots
    per ciphertext), which proofs ran, and the stages.
    """
    pk = outcome.config.public_key
    return SimulationResult(
        aggregate=outcome.aggregate,
        survivors=outcome.survivors,
        server_view=outcome.server_view,
        protocol="paillier",
        dropped=outcome.dropped,
        weight_sum=outcome.weight_sum,
        parameters=outcome.parameters,
        details={
            "round_id": outcome.config.round_id,
            "threshold": pk.threshold,
            "decryptors": pk.n_decryptors,
            "min_aggregate_size": outcome.config.min_aggregate_size,
            "key_bits": pk.n.bit_length(),
            "key_generation": (
                KeyGeneration.DEALER if pk.has_encryption_base else KeyGeneration.DISTRIBUTED
            ).value,
            "bits": outcome.config.encoder.bits,
            "slots_per_ciphertext": outcome.config.packing.slots,
            "signed": outcome.config.signed_contributions,
            "plaintext_proofs": outcome.config.plaintext_proofs,
            "decryption_proofs": outcome.config.decryption_proofs,
            "stages": tuple(stage.value for stage in STAGES),
        },
    )
