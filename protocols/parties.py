"""Who takes part in a round: the range of client ids every protocol family enforces.

Client ids are in ``[1, 2^63 - 1]`` (also their Shamir evaluation points); 0 is the
server. The wire codecs, the communication graphs, the clients, the simulation entry and
the Flower PKI all check against :data:`MAX_CLIENT_ID`.
"""

from __future__ import annotations

__all__ = ["MAX_CLIENT_ID"]

MAX_CLIENT_ID = (1 << 63) - 1
"""The largest client id (ids are in ``[1, 2^63 - 1]``; 0 is the server); the one bound the
wire codec, the graphs, the clients and the Flower PKI all enforce."""
