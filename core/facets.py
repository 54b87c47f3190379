"""Facet counts: how many items of a result set carry each value, or fall in each range, for a UI's filters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec


class Bucket(msgspec.Struct, frozen=True):
    """A named range of numbers, both bounds inclusive; None leaves that end open."""

    name: str
    low: int | None
    high: int | None

    def holds(self, number: int) -> bool:
        return (self.low is None or number >= self.low) and (self.high is None or number <= self.high)


def count_values(values_per_item: Iterable[Iterable[str]], top: int) -> list[tuple[str, int]]:
    """The `top` values by how many items carry them (an item counts once per value), most first,
    ties by value."""
    counts = Counter(value for values in values_per_item for value in set(values))
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]


def count_buckets(numbers: Iterable[int], buckets: Iterable[Bucket]) -> list[tuple[Bucket, int]]:
    """How many numbers fall in each bucket (the first that holds it), most first, ties in the buckets'
    order; empty buckets are left out, as values no item carries are."""
    ordered = list(buckets)
    counts = Counter(next((b for b in ordered if b.holds(number)), None) for number in numbers)
    present = [(bucket, counts[bucket]) for bucket in ordered if counts[bucket]]
    return sorted(present, key=lambda item: -item[1])  # stable: ties keep the buckets' order
