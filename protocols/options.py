"""The choice of protocol: one enum for the simulation entry, the recipe and Flower."""

from __future__ import annotations

from enum import Enum

from secagg.errors import InvalidParameterError

__all__ = ["ProtocolName"]


class ProtocolName(str, Enum):
    """The secure aggregation protocols the library runs.

    ``secagg``: complete-graph masking (Bonawitz et al., CCS 2017). ``secagg+``: masking
    over a sparse random graph derived from the threat model (Bell et al., CCS 2020);
    cost per client grows like ``log n``. ``paillier``: packed threshold Paillier with a
    decryption committee (no single party can decrypt).
    """

    SECAGG = "secagg"
    SECAGG_PLUS = "secagg+"
    PAILLIER = "paillier"

    @classmethod
    def parse(cls, value: ProtocolName | str) -> ProtocolName:
        """The member named by ``value``.

        Raises:
            InvalidParameterError: ``value`` names no protocol.
        """
        try:
            return cls(value)
        except ValueError:
            raise InvalidParameterError(
                f"unknown protocol {value!r}; choose one of {[p.value for p in cls]}"
            ) from None
