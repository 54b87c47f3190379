"""A namespace's dense matrix, kept in fixed-size blocks so that growing it never copies it.

One contiguous matrix grown by reallocation holds the old and the new copy for a moment: at 1M
float16 rows that was +743 MB on the first insert after opening a saved index (BENCHMARKS.md,
section 2). Here the matrix is a list of segments: growth adds a block of `block_rows` rows and
leaves the others in place. Only a segment smaller than a block (a small namespace, or a small
snapshot adopted whole) grows by doubling, so a write holds at most one block's worth of extra
memory. The first segment may be any size: a loaded snapshot's array is adopted as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

# 65,536 x 384 is 100 MB as float32 and 50 MB as float16: the most a growth adds at once. Fewer,
# larger blocks would make gathers of many rows across them cheaper (a graph's few candidates are
# copied row by row, see take).
BLOCK_ROWS = 65_536
# Rows converted to float32 at a time for a float16 product: numpy has no fast float16 product,
# and converting a whole segment at once would double its memory for the length of a query.
_CHUNK_ROWS = 16_384
# `take` copies up to 64 + 12 rows a segment one by one (~0.7 µs a row, 10 µs to start) rather than in
# one numpy pass per segment touched (~3.5 µs a segment and 0.3 a row, 40 µs to start): measured at 2,
# 4 and 16 segments of float16 rows, row by row wins below ~100, ~130 and ~320 rows.
_ROW_BY_ROW_BASE, _ROW_BY_ROW_PER_SEGMENT = 64, 12


class RowBlocks:
    """A (capacity, dimension) matrix of float32 or float16 rows in segments.

    Indexing by an int gives that row (a view); by an int array, those rows (a copy, in order).
    """

    def __init__(
        self, dimension: int, dtype: np.dtype, block_rows: int = BLOCK_ROWS, first: np.ndarray | None = None
    ) -> None:
        self.dimension = dimension
        self.dtype = np.dtype(dtype)
        self.block_rows = block_rows
        self.segments: list[np.ndarray] = []
        self._ends = np.zeros(0, np.int64)  # each segment's end row, ascending
        self._starts = np.zeros(0, np.int64)  # and its first row
        if first is not None and len(first):
            self._append(first)

    @property
    def capacity(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __len__(self) -> int:
        return self.capacity

    @property
    def nbytes(self) -> int:
        return sum(segment.nbytes for segment in self.segments)

    def _append(self, segment: np.ndarray) -> None:
        self._starts = np.append(self._starts, self.capacity)
        self.segments.append(segment)
        self._ends = np.append(self._ends, self.capacity + len(segment))

    def reserve(self, rows: int) -> None:
        """Room for at least `rows` rows: the existing ones stay where they are, unless the last segment
        is smaller than a block, which doubles (at most to a block) by copying."""
        while self.capacity < rows:
            last = self.segments[-1] if self.segments else None
            if last is not None and len(last) < self.block_rows:
                grown = np.zeros((min(self.block_rows, max(64, 2 * len(last))), self.dimension), self.dtype)
                grown[: len(last)] = last
                self.segments[-1] = grown
                self._ends[-1] += len(grown) - len(last)
            else:
                size = self.block_rows if last is not None else min(self.block_rows, max(64, rows))
                self._append(np.zeros((size, self.dimension), self.dtype))

    def _locate(self, row: int) -> tuple[np.ndarray, int]:
        number = int(np.searchsorted(self._ends, row, side="right"))
        if number >= len(self.segments) or row < 0:
            raise IndexError(f"row {row} is outside the matrix's {self.capacity} rows")
        return self.segments[number], row - int(self._starts[number])

    def __getitem__(self, rows: int | np.ndarray) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            segment, offset = self._locate(int(rows))
            return segment[offset]
        return self.take(np.asarray(rows, np.int64))

    def __setitem__(self, row: int, vector: np.ndarray) -> None:
        segment, offset = self._locate(int(row))
        segment[offset] = vector

    def put(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Write `vectors` into `rows` (any order)."""
        for number, positions, offsets in self._split(rows):
            self.segments[number][offsets] = vectors[positions]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """A copy of `rows`, in their order, in the matrix's precision."""
        if len(self.segments) == 1:
            return self.segments[0][rows]
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), self.dimension), self.dtype)
        if len(rows) <= _ROW_BY_ROW_BASE + _ROW_BY_ROW_PER_SEGMENT * len(self.segments):
            # A graph's few candidates (40 over the 16 segments of 1M rows: 39 µs against 128).
            numbers = self._segment_numbers(rows)
            offsets = rows - self._starts[numbers]
            segments = self.segments
            for position, (number, offset) in enumerate(zip(numbers.tolist(), offsets.tolist(), strict=True)):
                out[position] = segments[number][offset]
            return out
        for number, positions, offsets in self._split(rows):
            out[positions] = self.segments[number][offsets]
        return out

    def _segment_numbers(self, rows: np.ndarray) -> np.ndarray:
        """The segment each of `rows` lies in; IndexError if any lies outside the matrix."""
        if len(rows) and (rows.min() < 0 or rows.max() >= self.capacity):
            raise IndexError(f"rows outside the matrix's {self.capacity} rows")
        return np.searchsorted(self._ends, rows, side="right")

    def _split(self, rows: np.ndarray) -> Iterator[tuple[int, Any, np.ndarray]]:
        """(segment number, positions in `rows`, rows within the segment) for each segment touched."""
        rows = np.asarray(rows, np.int64)
        if not len(rows):
            return
        numbers = self._segment_numbers(rows)
        if numbers.min() == numbers.max():
            number = int(numbers[0])
            yield number, slice(None), rows - self._starts[number]
            return
        order = np.argsort(numbers, kind="stable")
        sorted_numbers = numbers[order]
        bounds = np.flatnonzero(np.diff(sorted_numbers)) + 1
        for positions in np.split(order, bounds):
            number = int(numbers[positions[0]])
            yield number, positions, rows[positions] - self._starts[number]

    def head(self, rows: int) -> list[np.ndarray]:
        """Views of the first `rows` rows, segment by segment (no copy)."""
        parts = []
        start = 0
        for segment in self.segments:
            if start >= rows:
                break
            parts.append(segment[: rows - start])
            start += len(segment)
        return parts

    def dots(self, query: np.ndarray, count: int, rows: np.ndarray | None = None) -> np.ndarray:
        """float32 dot products of `query` with the first `count` rows, or with `rows` (in their order)."""
        if rows is not None:
            if self.dtype == np.float32:
                return self.take(rows) @ query
            out = np.empty(len(rows), np.float32)
            for start in range(0, len(rows), _CHUNK_ROWS):
                end = min(len(rows), start + _CHUNK_ROWS)
                out[start:end] = self.take(rows[start:end]).astype(np.float32) @ query
            return out
        parts = self.head(count)
        if not parts:
            return np.zeros(0, np.float32)
        if self.dtype == np.float32:
            return np.concatenate([part @ query for part in parts]) if len(parts) != 1 else parts[0] @ query
        out = np.empty(count, np.float32)
        done = 0
        for part in parts:
            for start in range(0, len(part), _CHUNK_ROWS):
                block = part[start : start + _CHUNK_ROWS]
                out[done : done + len(block)] = block.astype(np.float32) @ query
                done += len(block)
        return out
