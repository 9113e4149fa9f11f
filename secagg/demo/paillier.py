"""The Paillier settings of the demo and what a round of them roughly costs.

The recipe's defaults stay secure (3072-bit keys, a committee of 10); the demo picks
smaller ones so that it ends in minutes, says so, and estimates the run's time before it
starts (:func:`paillier_round_seconds`).
"""

from __future__ import annotations

import argparse

from secagg.recipe.aggregator import SecureAggregator
from threat_models.paillier import paillier_parameters

__all__ = [
    "PAILLIER_DEMO_COMMITTEE",
    "PAILLIER_DEMO_KEY_BITS",
    "PAILLIER_DEMO_ROUNDS",
    "describe_paillier",
    "paillier_round_seconds",
]

#: The Paillier demo's own defaults (the recipe's stay 3072 bits and a committee of 10): at
#: 3072 bits a round of 50 uploads, each verified by the server and 10 committee members,
#: takes about a minute on a 2-core machine, so 30 rounds would take half an hour.
PAILLIER_DEMO_KEY_BITS = 2048
PAILLIER_DEMO_COMMITTEE = 4
PAILLIER_DEMO_ROUNDS = 8
#: Rough seconds per operation at 3072 bits on a 2-core machine (profiled from one round of
#: 50 uploads of the demo's 650 coordinates): encrypting and proving one upload, verifying
#: one upload's proof, one partial decryption with its proof. Other sizes scale as
#: ``(bits / 3072) ** 1.5`` (exponentiations ~ bits^2.5, fewer slots per ciphertext ~ 1 / bits).
_PAILLIER_SECONDS_3072 = {"upload": 0.31, "verify": 0.11, "partial": 1.0}


def paillier_round_seconds(key_bits: int, cohort: int, committee: int, threshold: int) -> float:
    """Rough wall time of one Paillier round of the demo (before any measurement)."""
    scale = float((key_bits / 3072) ** 1.5)
    unit = {k: v * scale for k, v in _PAILLIER_SECONDS_3072.items()}
    return (
        cohort * (unit["upload"] + (committee + 1) * unit["verify"]) + threshold * unit["partial"]
    )


def describe_paillier(
    args: argparse.Namespace,
    aggregator: SecureAggregator,
    clients_per_round: int,
    *,
    default_rounds: bool,
) -> None:
    """Say which Paillier settings the demo chose, why, and roughly what the run will cost."""
    key_bits = int(aggregator._paillier_key_bits)
    committee = int(aggregator.paillier_committee)
    threshold = paillier_parameters(
        clients_per_round, aggregator.threat_model, n_decryptors=committee
    ).threshold
    chosen = []
    if args.paillier_key_bits is None:
        chosen.append(
            f"a {key_bits}-bit key (112-bit security; the recipe's default is 3072, 128-bit)"
        )
    if args.paillier_committee is None:
        chosen.append(
            f"a {committee}-member decryption committee (threshold {threshold}; the recipe's "
            "default is 10)"
        )
    if default_rounds:
        chosen.append(f"{args.rounds} rounds (30 for the other protocols)")
    if chosen:
        print(
            "paillier demo settings: "
            + ", ".join(chosen)
            + ". Every upload is encrypted, proven and verified by the server and each "
            "committee member, so a 3072-bit round with a committee of 10 takes about a "
            "minute on 2 cores; pass --paillier-key-bits 3072 --paillier-committee 10 "
            "--rounds 30 for the recipe's settings"
        )
    per_round = paillier_round_seconds(key_bits, clients_per_round, committee, threshold)
    print(
        f"estimated cost: about {per_round:.0f} s per round of ~{clients_per_round} uploads, "
        f"{per_round * args.rounds / 60:.1f} min for {args.rounds} rounds, plus the key generation "
        "(a random time, from seconds to minutes) -- rough figures for a 2-core machine; "
        "each round's time is printed as it ends"
    )
