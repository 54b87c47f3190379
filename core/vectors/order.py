"""The order a namespace keeps its records in, as Upstash's `range` walks them: by insertion.

Every new id gets the namespace's next sequence number, kept while the record lives (an upsert or
update of an existing id keeps it; a deleted id that comes back is new). A range cursor is the
sequence number to continue from, so a walk is stable under concurrent writes: a record that exists
for the whole walk is returned exactly once, records added during it come after the cursor, and
deleted ones simply stop appearing. Sequence numbers are never reused within a namespace (a reset
keeps counting), and they are saved with the snapshot; journal replay assigns the same numbers
again because it applies the same writes in the same order.

The walk is two parallel lists in ascending sequence order; a delete leaves a hole (None) that a
later compaction removes, so a page costs its own length plus the holes it crosses, never a pass
over the namespace.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

# Holes tolerated before the lists are compacted: this many, or half of the entries.
_MAX_HOLES = 1024


class InsertionOrder:
    def __init__(self) -> None:
        self.next_sequence = 0
        self._sequences: list[int] = []  # ascending
        self._ids: list[str | None] = []  # None: deleted since the last compaction
        self._holes = 0

    def clear(self) -> None:
        """Forget every record, but keep counting: a cursor from before a reset finds nothing again."""
        self._sequences, self._ids, self._holes = [], [], 0

    def load(self, sequences: list[int], ids: list[str], next_sequence: int) -> None:
        """Records with their saved sequence numbers (any order)."""
        pairs = sorted(zip(sequences, ids, strict=True))
        self._sequences = [sequence for sequence, _ in pairs]
        self._ids = [id for _, id in pairs]
        self._holes = 0
        self.next_sequence = max(next_sequence, self._sequences[-1] + 1 if pairs else 0)

    def append(self, id: str) -> int:
        """A new record's sequence number."""
        sequence = self.next_sequence
        self.next_sequence += 1
        self._sequences.append(sequence)
        self._ids.append(id)
        return sequence

    def remove(self, sequence: int) -> None:
        position = bisect.bisect_left(self._sequences, sequence)
        if position < len(self._sequences) and self._sequences[position] == sequence:
            self._ids[position] = None
            self._holes += 1
            if self._holes > max(_MAX_HOLES, len(self._ids) // 2):
                self._compact()

    def _compact(self) -> None:
        kept = [
            (sequence, id) for sequence, id in zip(self._sequences, self._ids, strict=True) if id is not None
        ]
        self._sequences = [sequence for sequence, _ in kept]
        self._ids = [id for _, id in kept]
        self._holes = 0

    def page(
        self, start: int, limit: int, wanted: Callable[[str], bool] | None = None
    ) -> tuple[list[str], int | None]:
        """Up to `limit` ids from sequence `start` on (those `wanted` passes, if given), and the
        sequence number the next page starts at (None after the last)."""
        found: list[str] = []
        for position in range(bisect.bisect_left(self._sequences, start), len(self._ids)):
            id = self._ids[position]
            if id is None or (wanted is not None and not wanted(id)):
                continue
            if len(found) == limit:
                return found, self._sequences[position]
            found.append(id)
        return found, None
