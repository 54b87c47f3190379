"""Stored numbers as Upstash reports them: each float32 (or float16) value as the shortest decimal that
reads back as the same stored value, so [0.1, 0.2] comes back as [0.1, 0.2], not as the float32
values widened to float64 ([0.10000000149011612, 0.20000000298023224]).

For a precision of p significant digits, the nearest decimal to x is `round(x * 10**k) / 10**k`
(k = p - 1 - x's decimal exponent): exact arithmetic up to the final, correctly rounded division,
so it is the float64 Python would parse from that decimal's text. Whether it reads back as the
stored value only improves as p grows, so all of p = 1..9 are tried at once, as rows of one array,
and the smallest that fits is kept: a dozen numpy calls per array instead of formatting each
element (a 384-d vector: 0.24 ms in Python, 0.45 ms through numpy's string conversion). Float16
values come from a table of all 65,536 of them. Values so large or small that the powers of ten
are not exact go through numpy's own shortest formatting, one by one.
"""

from __future__ import annotations

import functools

import numpy as np

# Powers of ten exact in float64 (10**22 is the last).
_POWERS = np.array([float(10**exponent) for exponent in range(23)])
_MAX_DIGITS = {np.dtype(np.float32): 9, np.dtype(np.float16): 5}
_CHUNK = 512
# Up to this many values are formatted one by one (see _shortest_of).
_FEW = 32


def shortest(values: np.ndarray) -> np.ndarray:
    """float64 values, each the shortest decimal that rounds to the same value of `values`' dtype
    (float32 or float16); any shape."""
    stored = np.asarray(values)
    if stored.dtype == np.float16:
        return _float16_table()[stored.view(np.uint16)]
    return _shortest_of(stored)


def _shortest_of(stored: np.ndarray) -> np.ndarray:
    wide = stored.astype(np.float64)
    digits = _MAX_DIGITS.get(stored.dtype)
    if digits is None:
        return wide
    if wide.size <= _FEW:
        # A query's scores: numpy's own shortest formatting, element by element, costs less here
        # than the dozen array calls below (10 values: ~13 us against ~60 us).
        return np.array([float(str(value)) for value in stored.reshape(-1)]).reshape(stored.shape)
    flat_stored, flat = stored.reshape(-1), wide.reshape(-1)
    magnitude = np.abs(flat)
    nonzero = np.flatnonzero(magnitude > 0)  # zeros (and their signs) are already shortest
    if not len(nonzero):
        return wide
    exponents = np.floor(np.log10(magnitude[nonzero])).astype(np.int64)
    # k = p - 1 - exponent must stay within the exact powers for every p in 1..digits.
    inside = (exponents >= digits - 23) & (exponents <= 22)
    if not inside.all():
        for position in nonzero[~inside].tolist():
            flat[position] = float(np.format_float_positional(flat_stored[position], unique=True))
        nonzero, exponents = nonzero[inside], exponents[inside]
    # In chunks: the (digits, n) temporaries stay below the size where malloc maps fresh pages
    # for each one (128 KiB), and page faults, not arithmetic, dominated larger ones.
    for start in range(0, len(nonzero), _CHUNK):
        part = nonzero[start : start + _CHUNK]
        flat[part] = _shortest_decimals(
            flat[part], exponents[start : start + _CHUNK], flat_stored[part], digits
        )
    return wide


@functools.cache
def _float16_table() -> np.ndarray:
    """The shortest decimal of every float16 bit pattern (65,536 of them, 0.5 MB): a lookup then
    answers for a float16 matrix's rows with no arithmetic at all."""
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    table = every.astype(np.float64)
    finite = np.flatnonzero(np.isfinite(every))
    table[finite] = _shortest_of(every[finite])
    table.flags.writeable = False
    return table


def _shortest_decimals(x: np.ndarray, exponents: np.ndarray, target: np.ndarray, most: int) -> np.ndarray:
    """For each x, the nearest decimal of the fewest significant digits (1..most) that reads back as its
    `target`. Every precision is a row of one (most, n) array, so a vector takes a dozen numpy calls
    rather than a dozen per precision: the calls, not the arithmetic, are most of a 384-d vector's time."""
    precisions = np.arange(most, 0, -1)  # row r: most - r digits; row 0 always fits
    candidates, fits = _nearest(x, precisions[:, None] - 1 - exponents, target)
    fewest = most - 1 - np.argmax(fits[::-1], axis=0)
    return candidates[fewest, np.arange(len(x))]


def _nearest(x: np.ndarray, scale: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decimal with `scale` decimal places (negative: rounded to tens, hundreds...) nearest to x,
    and whether it reads back as `target`. The division or product by the exact power of ten comes
    last, so the result is the nearest float64 to that decimal. At an exact tie (x halfway between two
    such decimals) either may be the one that reads back; the other is tried when the first does not."""
    power = _POWERS[np.abs(scale)]
    with np.errstate(over="ignore", invalid="ignore"):
        if (scale >= 0).all():  # values below 10, every vector component of unit vectors: one way only
            scaled = x * power
            whole = np.round(scaled)
            candidate = whole / power
        else:
            up = scale >= 0
            scaled = np.where(up, x * power, x / power)
            whole = np.round(scaled)
            candidate = np.where(up, whole / power, whole * power)
        fits = candidate.astype(target.dtype) == target
        tied = ~fits & (scaled - np.floor(scaled) == 0.5)
        if tied.any():
            other = np.where(whole > scaled, whole - 1, whole + 1)
            other = np.where(scale >= 0, other / power, other * power)
            other_fits = tied & (other.astype(target.dtype) == target)
            candidate = np.where(other_fits, other, candidate)
            fits |= other_fits
    return candidate, fits


def floats(values: np.ndarray) -> list:
    """`shortest(values)` as (nested) Python lists of floats, ready for JSON."""
    return shortest(values).tolist()


def as_float32(values: np.ndarray) -> np.ndarray:
    """Scores at the precision Upstash reports them: rounded to float32, then written shortest."""
    return shortest(np.asarray(values, np.float64).astype(np.float32))
