"""How the server recovers the secrets that unmask the sum, even from lying responders.

In the unmasking stage every surviving client reveals, for each of its surviving peers,
its Shamir share of the peer's self-mask seed ``b_v``, and for each dropped peer its share
of the peer's masking key ``s_v``. The server rebuilds each secret from ``t`` shares and
checks it: a self-mask seed against the commitment ``SHA-256(b_v)`` the peer sent with its
shares, a masking key against the public key the peer advertised. A responder that reveals
a wrong share cannot corrupt the sum silently: the secret fails its check, and is rebuilt
from other subsets of ``t`` shares (:func:`reconstruct_secrets`); the responders whose
shares then prove inconsistent are left out of every later reconstruction. Only if no
subset works does the round abort (:class:`~secagg.errors.ProtocolAbortError`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

from protocols.masking.records import RevealedShare
from secagg.errors import InvalidParameterError, MessageError, ProtocolAbortError, ShareError
from secagg.primitives.keys import KeyPair
from secagg.primitives.shamir import Share, reconstruct, reconstruct_many

__all__ = [
    "parse_revealed_shares",
    "self_mask_check",
    "mask_key_check",
    "reconstruct_secrets",
]

_ROBUST_ATTEMPTS = 512


def parse_revealed_shares(
    items: Sequence[RevealedShare], owners: frozenset[int], sender: int, t: int
) -> list[tuple[int, Share]]:
    """The shares one response reveals, exactly those the server asked ``sender`` for.

    Returns:
        ``(owner, share)`` pairs.

    Raises:
        MessageError: the owners differ from ``owners``, a share is malformed, or it carries
            another index than ``sender`` or another threshold than ``t``.
    """
    got = [r.owner for r in items if isinstance(r, RevealedShare)]
    if len(got) != len(items) or len(set(got)) != len(got) or set(got) != owners:
        raise MessageError("revealed shares do not match the request")
    out = []
    for r in items:
        try:
            share = Share.from_bytes(r.share)
        except ShareError as exc:
            raise MessageError(f"malformed share: {exc}") from None
        if share.index != sender or share.threshold != t:
            raise MessageError("share carries the wrong index or threshold")
        out.append((r.owner, share))
    return out


def self_mask_check(commitment: bytes) -> Callable[[bytes], bool]:
    """Whether a rebuilt self-mask seed matches the peer's commitment ``SHA-256(b_v)``."""
    return lambda seed: hashlib.sha256(seed).digest() == commitment


def mask_key_check(public: bytes) -> Callable[[bytes], bool]:
    """Whether a rebuilt masking key's public half is the key the peer advertised."""

    def check(private: bytes) -> bool:
        try:
            return KeyPair.from_private_bytes(private).public_bytes == public
        except InvalidParameterError:
            return False

    return check


def reconstruct_secrets(
    owners: Sequence[int],
    groups: Sequence[list[Share]],
    checks: Sequence[Callable[[bytes], bool]],
    *,
    threshold: int,
) -> list[bytes]:
    """Every secret, each checked against its commitment or public key.

    Fast path: one batched reconstruction from the lowest-index shares. A secret that
    fails its check (a client revealed a wrong share) is rebuilt from other subsets of
    ``t`` shares; the responders whose shares then prove inconsistent are left out of every
    later reconstruction.

    Args:
        owners: whose secret each group of shares is (for the error).
        groups: the shares of each secret.
        checks: the check of each secret.
        threshold: ``t``.

    Raises:
        ProtocolAbortError: no subset of some secret's shares passes its check.
    """
    try:
        out: list[bytes | None] = list(reconstruct_many(groups))
    except ShareError:
        out = [None] * len(groups)
    failed = [
        i
        for i, (secret, check) in enumerate(zip(out, checks, strict=True))
        if secret is None or not check(secret)
    ]
    bad: set[int] = set()
    for i in failed:
        secret, liars = _robust_reconstruct(groups[i], checks[i], threshold, bad)
        if secret is None:
            raise ProtocolAbortError(
                f"the revealed shares of client {owners[i]}'s secret are inconsistent"
            )
        bad |= liars
        out[i] = secret
    return [s for s in out if s is not None]


def _robust_reconstruct(
    shares: list[Share], check: Callable[[bytes], bool], t: int, known_bad: set[int]
) -> tuple[bytes | None, set[int]]:
    """A secret from ``t`` of ``shares`` that passes ``check``, and the inconsistent responders.

    Shares of the responders in ``known_bad`` are tried last. Subsets are drawn by a seeded
    (non-secret) generator: choosing which public shares to combine needs no secrecy.
    """
    by_sharing: dict[bytes, list[Share]] = {}
    for share in shares:
        by_sharing.setdefault(share.sharing_id, []).append(share)
    rng = random.Random(len(shares))
    for group in sorted(by_sharing.values(), key=len, reverse=True):
        if len(group) < t:
            continue
        trusted = sorted((s for s in group if s.index not in known_bad), key=lambda s: s.index)
        pool = trusted if len(trusted) >= t else sorted(group, key=lambda s: s.index)
        for attempt in range(_ROBUST_ATTEMPTS):
            subset = pool[:t] if attempt == 0 else rng.sample(pool, t)
            try:
                secret = reconstruct(subset, verify_extra=False)
            except ShareError:
                continue
            if not check(secret):
                continue
            liars = set()
            for other in group:
                if other in subset:
                    continue
                try:
                    reconstruct([*subset, other], verify_extra=True)
                except ShareError:
                    liars.add(other.index)
            liars |= {s.index for s in shares if s.sharing_id != group[0].sharing_id}
            return secret, liars
    return None, set()
