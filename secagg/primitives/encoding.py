"""Fixed-point encoding of real vectors into the ring Z_(2^b).

A value ``x`` in the configured range ``[lo, hi]`` becomes an integer in ``[0, L]``::

    q = SR((x - lo) * scale),   scale = L / (hi - lo)

where ``SR`` is unbiased stochastic rounding (``floor(t) + Bernoulli(t - floor(t))``), so
``E[q] = (x - lo) * scale`` and ``|q - (x - lo) * scale| < 1``. The integer is embedded in
Z_(2^b) as a ``uint64``; numpy's unsigned arithmetic wraps modulo 2^64, and reducing with
``& (2^b - 1)`` gives arithmetic modulo 2^b for every ``b <= 62``.

Capacity: the encoder is built for at most ``max_clients`` summands. It requires
``max_clients * L <= 2^b - 1`` so that a sum of that many encodings never wraps; the
default ``L = floor((2^b - 1) / max_clients)`` is the finest quantisation that fits.

Decoding a sum ``S`` of ``n`` encodings inverts the affine map::

    sum_i x_i  ~=  S / scale + n * lo

Each summand's rounding error is below one quantum ``1 / scale``, so the decoded sum is
within ``n`` quanta of the true sum (plus float64 rounding of the result, about
``2^-52`` times its magnitude, which matters only when ``b`` exceeds ~50).

Randomness: stochastic rounding is local and needs no secrecy; it uses a numpy
``Generator`` (seeded from OS entropy unless one is passed in), one ``Generator.random``
draw per coordinate, in order.

Cost: ``encode`` and ``decode_sum`` run over blocks of :data:`BLOCK` elements whose few
temporaries stay in the L2 cache, with in-place operations only: the input is read once
and the output written once, and the range check is one reduction per block (see
``encode``).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Protocol, cast, overload

import numpy as np
import numpy.typing as npt

from secagg.errors import CapacityError, EncodingError, InvalidParameterError
from secagg.validation import is_int

__all__ = [
    "VectorEncoder",
    "FixedPointEncoder",
    "to_ring",
    "from_ring_centered",
    "ring_mask",
    "MAX_RING_BITS",
    "BLOCK",
]

MAX_RING_BITS = 62

BLOCK = 16384
"""Elements per block of the encode and decode loops: a block's three float64 temporaries
(128 KiB each) and its comparison stay in a core's L2 cache, while the blocks are few enough
that the Python cost of a block's dozen numpy calls stays small beside its arithmetic."""

U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_F64 = struct.Struct("<d")
_F64_BITS = struct.Struct("<Q")


def _check_ring_bits(bits: int) -> None:
    if not is_int(bits) or not 1 <= bits <= MAX_RING_BITS:
        raise InvalidParameterError(f"bits must be an int in [1, {MAX_RING_BITS}], got {bits!r}")


def ring_mask(bits: int) -> np.uint64:
    """``2^bits - 1`` as a ``uint64``: ``a & ring_mask(b)`` reduces modulo 2^b."""
    _check_ring_bits(bits)
    mask: np.uint64 = np.uint64((1 << bits) - 1)
    return mask


def to_ring(values: npt.ArrayLike, bits: int) -> U64:
    """Embed signed integers in Z_(2^bits) (two's complement, i.e. ``v mod 2^bits``).

    Values must satisfy ``-2^(bits-1) <= v < 2^(bits-1)``; anything else is an
    :class:`EncodingError` (this is the *checked* embedding; modular clipping of noisy
    integers is done explicitly by the caller before calling it).
    """
    _check_ring_bits(bits)
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise EncodingError(f"to_ring expects an integer array, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    half = 1 << (bits - 1)
    if arr.size and (int(arr.min()) < -half or int(arr.max()) >= half):
        raise EncodingError(f"integers out of the signed range of Z_(2^{bits})")
    return (
        arr.view(np.uint64) & ring_mask(bits)
        if arr.flags.c_contiguous
        else (np.ascontiguousarray(arr).view(np.uint64) & ring_mask(bits))
    )


def from_ring_centered(values: npt.ArrayLike, bits: int) -> I64:
    """Map elements of Z_(2^bits) to their centred representatives in
    ``[-2^(bits-1), 2^(bits-1))``."""
    _check_ring_bits(bits)
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.uint64)) & ring_mask(bits)
    half = np.uint64(1 << (bits - 1))
    signed = arr.astype(np.int64)
    signed[arr >= half] -= np.int64(1 << bits) if bits < 63 else 0
    return signed


def _float_bits(value: float) -> int:
    """The IEEE 754 bits of a float64, as an unsigned integer."""
    bits: int = _F64_BITS.unpack(_F64.pack(value))[0]
    return bits


def _bits_float(bits: int) -> float:
    """The float64 whose IEEE 754 bits are ``bits``."""
    value: float = _F64.unpack(_F64_BITS.pack(bits))[0]
    return value


@dataclass(frozen=True)
class FixedPointEncoder:
    """Stochastic fixed-point encoding of ``[lo, hi]`` into Z_(2^bits) for up to ``max_clients``
    summands.

    Args:
        bits: ring exponent b, 1..62.
        lo: lower end of the accepted range.
        hi: upper end of the accepted range (``hi > lo``).
        max_clients: the largest number of encodings that will ever be summed.
        levels: number of quantisation steps ``L`` over the range (optional; default the
            largest with ``max_clients * L <= 2^bits - 1``).

    Raises:
        InvalidParameterError: on a malformed configuration.
        CapacityError: if ``max_clients`` encodings could wrap the ring.
    """

    bits: int
    lo: float
    hi: float
    max_clients: int
    levels: int = 0
    scale: float = field(init=False)
    _offset_int: int = field(init=False, repr=False)
    _span_bits: int = field(init=False, repr=False, compare=False)
    _may_exceed: bool = field(init=False, repr=False, compare=False)
    _exact_bounds: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_ring_bits(self.bits)
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)) or not self.hi > self.lo:
            raise InvalidParameterError(f"need finite lo < hi, got [{self.lo}, {self.hi}]")
        if not isinstance(self.max_clients, int) or self.max_clients < 1:
            raise InvalidParameterError(
                f"max_clients must be a positive int, got {self.max_clients!r}"
            )
        top = (1 << self.bits) - 1
        levels = self.levels or top // self.max_clients
        if levels < 1 or self.max_clients * levels > top:
            raise CapacityError(
                f"{self.max_clients} clients x {levels} levels exceed Z_(2^{self.bits}); "
                "use more bits, fewer levels or a smaller cohort"
            )
        if levels > 1 << 53:
            # keep every level exactly representable in float64
            levels = 1 << 53
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "scale", levels / (self.hi - self.lo))
        object.__setattr__(
            self, "_offset_int", math.floor(-self.lo * (levels / (self.hi - self.lo)))
        )
        # constants of encode's range check (see there)
        span = float(np.float64(self.hi) - np.float64(self.lo))
        object.__setattr__(self, "_span_bits", _float_bits(span))
        object.__setattr__(self, "_may_exceed", span * self.scale > levels)
        exact = float(self.lo) == self.lo and float(self.hi) == self.hi
        object.__setattr__(self, "_exact_bounds", exact)

    @classmethod
    def symmetric(
        cls, bound: float, *, bits: int, max_clients: int, levels: int = 0
    ) -> FixedPointEncoder:
        """Encoder for ``[-bound, bound]``."""
        return cls(bits=bits, lo=-bound, hi=bound, max_clients=max_clients, levels=levels)

    @property
    def quantum(self) -> float:
        """Width of one quantisation step, ``(hi - lo) / L``."""
        return 1.0 / self.scale

    @property
    def modulus(self) -> int:
        return 1 << self.bits

    def encoded_length(self, d: int) -> int:
        """Fixed-point encoding keeps the length."""
        return d

    @overload
    def encode(
        self,
        values: npt.ArrayLike,
        *,
        rng: np.random.Generator | None = None,
        clip: bool = False,
        dtype: type[np.uint64] = np.uint64,
    ) -> U64: ...

    @overload
    def encode(
        self,
        values: npt.ArrayLike,
        *,
        rng: np.random.Generator | None = None,
        clip: bool = False,
        dtype: type[np.uint32],
    ) -> U32: ...

    def encode(
        self,
        values: npt.ArrayLike,
        *,
        rng: np.random.Generator | None = None,
        clip: bool = False,
        dtype: type[np.uint64] | type[np.uint32] = np.uint64,
    ) -> U64 | U32:
        """Encode a 1-D float vector.

        Args:
            values: finite reals in ``[lo, hi]``.
            rng: generator for the stochastic rounding (default: fresh, OS-seeded).
            clip: explicitly clamp out-of-range values to ``[lo, hi]`` instead of failing.
            dtype: the output word, ``np.uint64`` (default) or ``np.uint32`` (rings of at
                most 32 bits: the ring's own word, written directly, with no conversion
                pass; every code word is at most ``levels < 2^bits``).

        Raises:
            EncodingError: non-finite values, values outside the range (unless ``clip``),
                or input that is not one-dimensional.
            InvalidParameterError: ``dtype`` is not one of the two, or ``np.uint32`` for a
                ring of more than 32 bits.
        """
        if dtype is not np.uint64 and dtype is not np.uint32:
            raise InvalidParameterError(f"dtype must be np.uint64 or np.uint32, got {dtype!r}")
        if dtype is np.uint32 and self.bits > 32:
            raise InvalidParameterError(
                f"a {self.bits}-bit ring needs 64-bit words; np.uint32 holds rings of <= 32 bits"
            )
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 1:
            raise EncodingError(f"expected a 1-D vector, got shape {x.shape}")
        gen = rng if rng is not None else np.random.default_rng()
        d = x.shape[0]
        out: U64 | U32 = cast("U64 | U32", np.empty(d, dtype=dtype))
        if d == 0:
            return out
        # q <= levels <= 2^53: the int64 view holds the same words, and float64 -> int64
        # is the conversion the CPU does in one instruction; 32-bit words take q < 2^32
        # (levels <= 2^bits - 1) exactly through the unsigned conversion
        words = cast("I64 | U32", out.view(np.int64) if dtype is np.uint64 else out)
        lo, hi, scale, levels = self.lo, self.hi, self.scale, float(self.levels)
        # y = x - lo is >= +0 exactly when x >= lo (a difference of distinct floats is never
        # zero) and x > hi forces y >= fl(hi - lo): so ``max(bits of y as uint64) <
        # bits(fl(hi - lo))`` clears a block in one reduction (a negative, NaN or infinite y
        # has larger bits); a block with y at fl(hi - lo) is checked against hi directly.
        # Bounds given as ints that float64 cannot hold take the exact path in every block.
        span_bits, exact_bounds = self._span_bits, self._exact_bounds
        # (hi - lo) * scale may round above L: then t is clamped where a block reaches it
        may_exceed = self._may_exceed
        count = -(-d // BLOCK)
        size = -(-d // count)  # equal blocks: no short tail paying the per-block cost
        t, base, draws = np.empty((3, size))  # one allocation for the block's scratch
        bits = t.view(np.uint64)
        up = np.empty(size, dtype=np.bool_)
        # (the ufuncs bound once, outputs passed by position: the per-block cost is Python's)
        subtract, multiply, floor, less, add = np.subtract, np.multiply, np.floor, np.less, np.add
        top_of = np.maximum.reduce
        for start in range(0, d, size):
            stop = start + size
            if stop > d:
                stop, size = d, d - start
                t, base, draws, up = t[:size], base[:size], draws[:size], up[:size]
                bits = t.view(np.uint64)
            xs = x[start:stop]
            subtract(xs, lo, t)
            top = int(top_of(bits))
            if exact_bounds and (top < span_bits or (top == span_bits and float(xs.max()) <= hi)):
                clamp = may_exceed and _bits_float(top) * scale > levels
            else:
                top_y = self._admit_block(x, xs, t, clip)  # raises, or clears the block
                clamp = may_exceed and top_y * scale > levels
            multiply(t, scale, t)
            if clamp:
                np.minimum(t, levels, out=t)
            floor(t, base)
            subtract(t, base, t)  # the fraction, exactly
            gen.random(out=draws)
            less(draws, t, up)  # round up with probability t - floor(t)
            w = words[start:stop]
            np.copyto(w, base, casting="unsafe")
            add(w, up, w)
        return out

    def _admit_block(self, x: F64, xs: F64, y: F64, clip: bool) -> float:
        """The slow path of ``encode`` for a block the one-reduction test did not clear.

        Refuses exactly what the whole-vector checks refuse (non-finite values first, then
        values outside ``[lo, hi]`` unless ``clip``); otherwise leaves ``xs - lo`` (of the
        clamped block under ``clip``) in ``y`` and returns its maximum.
        """
        lo, hi = self.lo, self.hi
        finite = bool(np.all(np.isfinite(xs)))
        if finite and float(xs.min()) >= lo and float(xs.max()) <= hi:
            return float(y.max())  # e.g. x = -0.0 with lo = +0.0
        if not finite:
            raise EncodingError("input contains NaN or infinity")
        if not clip:
            # the message of the whole-vector check: NaN anywhere first, then the extremes
            if not np.all(np.isfinite(x)):
                raise EncodingError("input contains NaN or infinity")
            raise EncodingError(
                f"values outside [{lo}, {hi}] (min {float(x.min())}, max "
                f"{float(x.max())}); "
                "clip the update first or pass clip=True"
            )
        np.clip(xs, lo, hi, out=y)
        np.subtract(y, lo, out=y)
        return float(y.max())

    def decode_sum(self, summed: npt.ArrayLike, n: int) -> F64:
        """Decode the modular sum of ``n`` encodings back to the real sum.

        Raises:
            CapacityError: if ``n`` exceeds ``max_clients`` (the sum may have wrapped).
            EncodingError: if an element exceeds ``n * L`` (not a sum of ``n`` encodings).
        """
        if not isinstance(n, int) or n < 0:
            raise InvalidParameterError(f"n must be a non-negative int, got {n!r}")
        if n > self.max_clients:
            raise CapacityError(
                f"sum of {n} encodings exceeds the encoder's capacity of {self.max_clients}"
            )
        s = np.asarray(summed, dtype=np.uint64)
        flat = s.reshape(-1)
        limit = n * self.levels
        # exact integer part first, so that float64 never cancels two large numbers
        k = self._offset_int
        try:
            shift = np.int64(n * k)
        except OverflowError:
            self._check_sum_bound(flat, n)  # the data error comes first
            raise
        residual = n * (self.lo + k / self.scale)
        scale = self.scale
        d = flat.shape[0]
        out: F64 = np.empty(d, dtype=np.float64)
        size = -(-d // -(-d // BLOCK)) if d else 1
        words = np.empty(size, dtype=np.uint64)
        centred = words.view(np.int64)
        subtract, divide, add, top_of = np.subtract, np.divide, np.add, np.maximum.reduce
        for start in range(0, d, size):
            stop = start + size
            if stop > d:
                stop, size = d, d - start
                words = words[:size]
                centred = words.view(np.int64)
            block = flat[start:stop]
            # n * L <= 2^b - 1: a block within the bound has no bits above the ring either,
            # so the reduction mod 2^b is only needed where the bound fails
            if int(top_of(block)) > limit:
                np.bitwise_and(block, ring_mask(self.bits), out=words)
                if int(top_of(words)) > limit:
                    raise EncodingError(
                        "value exceeds n * levels: not a sum of n encodings of this encoder"
                    )
                block = words
            subtract(block.view(np.int64), shift, centred)
            o = out[start:stop]
            divide(centred, scale, o)
            add(o, residual, o)
        if s.ndim == 1:
            return out
        shaped: F64 = out.reshape(s.shape)[()]  # a 0-d input gives a scalar, as numpy does
        return shaped

    def _check_sum_bound(self, flat: U64, n: int) -> None:
        if flat.size and int((flat & ring_mask(self.bits)).max()) > n * self.levels:
            raise EncodingError(
                "value exceeds n * levels: not a sum of n encodings of this encoder"
            )

    def decode(self, encoded: npt.ArrayLike) -> F64:
        """Decode a single encoding (``decode_sum`` with ``n = 1``)."""
        return self.decode_sum(encoded, 1)


class VectorEncoder(Protocol):
    """What a protocol needs from an encoding: real vector -> Z_(2^bits) and back for sums.

    :class:`FixedPointEncoder` implements it; so do the distributed-DP encoders in
    :mod:`dp` (which rotate, scale, round and noise before embedding). ``encode`` may
    return a vector of a different length than its input (padding); ``decode_sum``
    returns the original length.
    """

    @property
    def bits(self) -> int: ...

    @property
    def max_clients(self) -> int: ...

    def encoded_length(self, d: int) -> int: ...

    def encode(self, values: npt.ArrayLike) -> U64: ...

    def decode_sum(self, summed: npt.ArrayLike, n: int) -> F64: ...
