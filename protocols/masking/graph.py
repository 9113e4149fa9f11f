"""Communication graphs: who shares secrets with whom and masks against whom.

SecAgg (Bonawitz et al. 2017) uses the complete graph. SecAgg+ (Bell et al. 2020) uses
the Harary graph ``H(n, k)``: the clients are placed on a ring in a uniformly random order
drawn from the operating system's CSPRNG (``secrets``), and each is linked to the ``k/2``
clients before it and the ``k/2`` after it. The graph is ``k``-regular and undirected,
and the neighbourhood of a fixed client is a uniform ``k``-subset of the others — the
property the parameter bounds of :mod:`threat_models.parameters` rely on.

Who draws the order decides who can bias it. Against a curious server the server draws it
(:func:`harary_graph`, OS CSPRNG). Against a server that may lie, the order comes from the
round's *graph seed* (:func:`seeded_ring`): every client commits to 32 random bytes before
any is revealed, and the seed hashes all reveals, so no party -- the server, a colluding
client that moves last, or both -- can steer it; every client computes the ring itself and
accepts no other neighbourhood. The expansion is SHAKE-256 of the seed, read as 64-bit
words, with rejection sampling for each Fisher-Yates index (exactly uniform).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from protocols.parties import MAX_CLIENT_ID
from secagg.errors import InvalidParameterError
from secagg.validation import require_int

__all__ = [
    "CommunicationGraph",
    "Ring",
    "complete_graph",
    "harary_graph",
    "seeded_ring",
    "MAX_CLIENT_ID",
]


def _distinct_ids(ids: Iterable[int]) -> tuple[int, ...]:
    out = tuple(require_int("client id", i, lo=1, hi=MAX_CLIENT_ID) for i in ids)
    if len(set(out)) != len(out):
        raise InvalidParameterError("client ids must be distinct")
    return out


@dataclass(frozen=True, eq=False)
class CommunicationGraph:
    """An undirected graph over client ids, stored as sorted neighbour tuples.

    Attributes:
        neighbours: ``id -> sorted tuple of neighbour ids`` (never containing ``id``).
        degree: the common degree ``k`` of every vertex.
    """

    neighbours: Mapping[int, tuple[int, ...]]
    degree: int

    def __post_init__(self) -> None:
        sets = {node: frozenset(peers) for node, peers in self.neighbours.items()}
        empty: frozenset[int] = frozenset()
        for node, peers in self.neighbours.items():
            if node in sets[node] or len(sets[node]) != self.degree or len(peers) != self.degree:
                raise InvalidParameterError("a communication graph must be k-regular without loops")
            for peer in peers:
                if node not in sets.get(peer, empty):
                    raise InvalidParameterError("a communication graph must be undirected")

    @property
    def nodes(self) -> tuple[int, ...]:
        """All client ids, sorted."""
        return tuple(sorted(self.neighbours))

    def __len__(self) -> int:
        return len(self.neighbours)

    def __getitem__(self, node: int) -> tuple[int, ...]:
        return self.neighbours[node]

    def is_complete(self) -> bool:
        """Whether every client neighbours every other (``k = n - 1``)."""
        return self.degree == len(self.neighbours) - 1


def complete_graph(ids: Sequence[int]) -> CommunicationGraph:
    """The complete graph over ``ids`` (SecAgg)."""
    nodes = sorted(_distinct_ids(ids))
    if len(nodes) < 2:
        raise InvalidParameterError("a graph needs at least two clients")
    return CommunicationGraph(
        neighbours={u: tuple(v for v in nodes if v != u) for u in nodes}, degree=len(nodes) - 1
    )


def harary_graph(
    ids: Sequence[int], degree: int, *, order: Sequence[int] | None = None
) -> CommunicationGraph:
    """The Harary graph ``H(n, k)`` over ``ids`` on a CSPRNG-shuffled ring (SecAgg+).

    Args:
        ids: the client ids.
        degree: ``k``; even and below ``n - 1``, or ``n - 1`` (then the complete graph).
        order: the ring order to use instead of a fresh uniformly random one. Only for
            tests and reproducible analyses: a predictable order weakens SecAgg+.

    Raises:
        InvalidParameterError: bad ids, degree or order.
    """
    nodes = _distinct_ids(ids)
    n = len(nodes)
    degree = require_int("degree", degree, lo=2, hi=n - 1)
    if degree == n - 1:
        return complete_graph(nodes)
    if degree % 2:
        raise InvalidParameterError(
            f"a Harary graph below the complete graph needs an even degree, got {degree}"
        )
    if order is None:
        ring = list(nodes)
        # Fisher-Yates with the OS CSPRNG
        for i in range(n - 1, 0, -1):
            j = secrets.randbelow(i + 1)
            ring[i], ring[j] = ring[j], ring[i]
    else:
        ring = list(_distinct_ids(order))
        if sorted(ring) != sorted(nodes):
            raise InvalidParameterError("order must be a permutation of ids")
    half = degree // 2
    neighbours: dict[int, tuple[int, ...]] = {}
    for pos, node in enumerate(ring):
        peers = [ring[(pos + off) % n] for off in range(-half, half + 1) if off]
        neighbours[node] = tuple(sorted(peers))
    return CommunicationGraph(neighbours=neighbours, degree=degree)


_ORDER_DOMAIN = b"secagg-fl/v1/graph-order"


def _words(seed: bytes) -> Iterator[int]:
    block = 0
    while True:
        raw = hashlib.shake_256(_ORDER_DOMAIN + block.to_bytes(8, "big") + seed).digest(8 * 1024)
        for i in range(0, len(raw), 8):
            yield int.from_bytes(raw[i : i + 8], "big")
        block += 1


def _uniform_below(words: Iterator[int], bound: int) -> int:
    limit = (1 << 64) - (1 << 64) % bound
    while True:
        w = next(words)
        if w < limit:
            return w % bound


@dataclass(frozen=True, eq=False)
class Ring:
    """A Harary graph given by its ring order: neighbourhoods on demand, ``O(k)`` each.

    Attributes:
        order: the clients in ring order.
        degree: ``k`` (``n - 1``: the complete graph).
    """

    order: tuple[int, ...]
    degree: int
    _position: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.order)
        if len(set(self.order)) != n or not 2 <= self.degree <= n - 1:
            raise InvalidParameterError("a ring needs distinct ids and a degree in [2, n - 1]")
        if self.degree < n - 1 and self.degree % 2:
            raise InvalidParameterError(
                "a Harary graph below the complete graph needs an even degree"
            )
        object.__setattr__(self, "_position", {v: i for i, v in enumerate(self.order)})

    @property
    def nodes(self) -> frozenset[int]:
        """Every client of the ring."""
        return frozenset(self.order)

    def neighbours(self, node: int) -> frozenset[int]:
        """``node``'s ``k`` neighbours."""
        position = self._position
        if node not in position:
            raise InvalidParameterError(f"client {node} is not on the ring")
        n = len(self.order)
        if self.degree == n - 1:
            return frozenset(v for v in self.order if v != node)
        pos, half = position[node], self.degree // 2
        return frozenset(self.order[(pos + off) % n] for off in range(-half, half + 1) if off)

    def graph(self) -> CommunicationGraph:
        """The whole graph (``O(n k)``)."""
        return harary_graph(self.order, self.degree, order=self.order)


def seeded_ring(ids: Sequence[int], degree: int, seed: bytes) -> Ring:
    """The Harary ring over ``ids`` whose order is fixed by ``seed`` (uniform, reproducible).

    Every party that knows ``ids`` (any order) and ``seed`` computes the same ring.

    Raises:
        InvalidParameterError: bad ids, degree or seed.
    """
    nodes = sorted(_distinct_ids(ids))
    if not isinstance(seed, bytes) or len(seed) < 16:
        raise InvalidParameterError("the graph seed must be at least 16 bytes")
    words = _words(seed)
    ring = list(nodes)
    for i in range(len(ring) - 1, 0, -1):
        j = _uniform_below(words, i + 1)
        ring[i], ring[j] = ring[j], ring[i]
    return Ring(tuple(ring), degree)
