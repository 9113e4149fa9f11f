"""The stages of a round, shared by every protocol family.

A round is a fixed sequence of :class:`Stage` values; a family runs a subsequence of it
(the masking protocols all six stages against a server that may lie, four against a
curious one; threshold Paillier three). Dropouts are named by stage
(:func:`~protocols.inputs.parse_dropouts`), and a party refuses a message of a stage it has
already passed.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Stage"]


class Stage(str, Enum):
    """Protocol stages, in order.

    ``GRAPH_SEED`` and ``CONSISTENCY_CHECK`` run only against a server that may lie (every
    class but curious): the first fixes the round's graph and execution context from the
    clients' committed random contributions, the second makes every client that reveals
    anything agree on the survivor set.
    """

    ADVERTISE_KEYS = "advertise_keys"
    GRAPH_SEED = "graph_seed"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY_CHECK = "consistency_check"
    UNMASKING = "unmasking"

    @property
    def position(self) -> int:
        """0-based position in the protocol order."""
        return _STAGE_ORDER.index(self)


_STAGE_ORDER = tuple(Stage)
