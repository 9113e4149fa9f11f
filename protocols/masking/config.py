"""Public configuration of a round and the client-side hardening switches.

:class:`RoundConfig` holds what every party agrees on before a round starts (round id,
``k`` and ``t``, the ring, the vector length). :class:`Hardening` lists the checks an
honest client makes against a lying server; all are on by default and the only way to
turn them off is to say so explicitly (:meth:`Hardening.unhardened`), which exists to
build the *unhardened baseline* that attack evaluations compare against.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from protocols.masking.records import MAX_ROUND_ID, MAX_WORDS
from protocols.stages import Stage
from secagg.errors import InvalidParameterError
from secagg.primitives.prg import MASK_PRG_VERSION, PrgAlgorithm
from secagg.validation import require_int
from threat_models.model import ServerClass
from threat_models.parameters import ProtocolParameters

__all__ = ["Hardening", "RoundConfig", "round_stages"]


@dataclass(frozen=True, slots=True)
class Hardening:
    """Client-side checks against a misbehaving server (all on by default).

    Attributes:
        check_survivor_lists: refuse an unmask request whose surviving and dropped lists
            overlap, name a peer the client never exchanged shares with, or leave one of
            them out; never reveal both shares for one peer. Off: the client answers each
            list literally, as Flower 1.41's client does (a client listed in both loses
            both shares).
        check_survivor_count: refuse to reveal anything when fewer than ``t`` of the
            client's peers, or fewer than the minimum aggregate size overall, survive.
        authenticate_keys: (signed rounds) verify every peer's identity signature on its
            advertised keys; off, a key substituted by the server is accepted.
        round_bound_signatures: (signed rounds) put the round id into every signed
            transcript; off, a signed key from an earlier round can be replayed into this one.
        model_bound_signatures: (signed rounds) put the hash of the global model the client
            trained on into its signed keys; off, a server sending different models to
            different clients goes unnoticed. Unsigned rounds (curious and semi-malicious
            servers) cannot detect model inconsistency at all.
        consistency_check: (every class but curious) unmask only the survivor set the client
            signed, and only with valid signatures on it from the consistency quorum
            (``ProtocolParameters.consistency_quorum``, more than half of the cohort plus the
            colluders); off, a server can show different survivor sets to different clients.
        verified_survivors: count toward the minimum aggregate size only survivors whose
            signature on the survivor set verified; off, the length of the server's list is
            trusted (ids that exist nowhere pad it).
        attest_masking_sets: reveal the self-mask share of a surviving peer only with that
            peer's signature on its masking set, and only if that set contains every
            surviving neighbour; off, a server that forwarded a victim the shares of only a few
            peers can declare exactly those dropped and unmask the victim alone.
        derive_graph: (SecAgg+) compute the neighbourhoods from the graph seed that all
            clients' committed contributions fix; off, the neighbours the server names are
            accepted (it can then choose the graph).
        fresh_signatures: bind every signature made after the keys to the execution context
            (a hash of the round id, the cohort and every client's revealed contribution);
            off, only to the round id, which the server picks.
        refuse_round_reuse: record every round in the client's :class:`RoundLog` and refuse
            a second execution of a round id; off, one identity can be driven through many
            executions of one round.
    """

    check_survivor_lists: bool = True
    check_survivor_count: bool = True
    authenticate_keys: bool = True
    round_bound_signatures: bool = True
    model_bound_signatures: bool = True
    consistency_check: bool = True
    verified_survivors: bool = True
    attest_masking_sets: bool = True
    derive_graph: bool = True
    fresh_signatures: bool = True
    refuse_round_reuse: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            if not isinstance(getattr(self, f.name), bool):
                raise InvalidParameterError(f"Hardening.{f.name} must be a bool")

    @classmethod
    def unhardened(cls) -> Hardening:
        """UNSAFE: every check off. Only for baselines that show what the checks prevent."""
        return cls(**{f.name: False for f in fields(cls)})

    @property
    def full(self) -> bool:
        """Whether every check is on."""
        return all(getattr(self, f.name) for f in fields(self))


def round_stages(server: ServerClass) -> tuple[Stage, ...]:
    """The stages a round runs against ``server``.

    Every class but curious adds ``graph_seed`` (the clients fix the graph and a fresh
    execution context) and ``consistency_check`` (all revealing clients agree on the
    survivors).
    """
    if ServerClass(server).lies_about_dropouts:
        return tuple(Stage)
    return tuple(s for s in Stage if s not in (Stage.GRAPH_SEED, Stage.CONSISTENCY_CHECK))


@dataclass(frozen=True, slots=True)
class RoundConfig:
    """What every party of one round agrees on in advance.

    Attributes:
        round_id: unique per aggregation round, in ``[0, 2^64)``; bound into every key
            derivation, ciphertext and signature.
        parameters: ``k``, ``t``, server class and minimum aggregate size
            (:mod:`threat_models.parameters`).
        bits: the ring is Z_(2^bits), ``1 <= bits <= 64``.
        vector_length: elements per masked input (the encoder's output length, plus one
            when a weight is folded in).
        prg: stream cipher that expands mask seeds.
    """

    round_id: int
    parameters: ProtocolParameters
    bits: int
    vector_length: int
    prg: PrgAlgorithm = PrgAlgorithm.AES_256_CTR

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "round_id", require_int("round_id", self.round_id, lo=0, hi=MAX_ROUND_ID))
        if not isinstance(self.parameters, ProtocolParameters):
            raise InvalidParameterError("parameters must be a ProtocolParameters")
        set_field(self, "bits", require_int("bits", self.bits, lo=1, hi=64))
        length = require_int("vector_length", self.vector_length, lo=1, hi=MAX_WORDS)
        set_field(self, "vector_length", length)
        set_field(self, "prg", PrgAlgorithm(self.prg))

    @property
    def threshold(self) -> int:
        """``t``."""
        return self.parameters.threshold

    @property
    def signed(self) -> bool:
        """Whether keys and survivor sets are signed (malicious-server variant)."""
        return self.parameters.server.needs_authentication

    @property
    def consistent(self) -> bool:
        """Whether the round runs the graph-seed and consistency stages (server may lie)."""
        return self.parameters.server.lies_about_dropouts

    @property
    def mask_prg_version(self) -> int:
        """The mask PRG's output definition the round expands masks with.

        :data:`~secagg.primitives.prg.MASK_PRG_VERSION` (4-byte keystream words for
        ``bits <= 32``); it is bound into the signed advertisement and masking-set
        transcripts, so a party on another definition is refused, not summed.
        """
        return MASK_PRG_VERSION

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The stages of this round, in order."""
        return round_stages(self.parameters.server)
