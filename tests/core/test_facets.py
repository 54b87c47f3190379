"""Facet counting (core/facets.py)."""

from __future__ import annotations

from core.facets import Bucket, count_buckets, count_values

BUCKETS = (Bucket("short", None, 299), Bucket("medium", 300, 1199), Bucket("long", 1200, None))


def test_values_most_frequent_first_ties_by_value_each_item_counted_once():
    items = [["b", "a", "a"], ["b", "c"], ["c", "b"], ["d"]]

    assert count_values(items, top=10) == [("b", 3), ("c", 2), ("a", 1), ("d", 1)]


def test_values_keep_the_top_n():
    assert count_values([["z"], ["y"], ["x"], ["x"]], top=2) == [("x", 2), ("y", 1)]
    assert count_values([], top=5) == []


def test_bucket_bounds_are_inclusive_and_open_ends_unbounded():
    assert [bucket.name for bucket in BUCKETS if bucket.holds(299)] == ["short"]
    assert [bucket.name for bucket in BUCKETS if bucket.holds(300)] == ["medium"]
    assert [bucket.name for bucket in BUCKETS if bucket.holds(1199)] == ["medium"]
    assert [bucket.name for bucket in BUCKETS if bucket.holds(1200)] == ["long"]
    assert BUCKETS[0].holds(1)
    assert BUCKETS[2].holds(10**9)


def test_buckets_most_first_ties_in_bucket_order_empty_ones_left_out():
    counts = count_buckets([1200, 5000, 10, 299, 300], BUCKETS)

    assert [(bucket.name, n) for bucket, n in counts] == [("short", 2), ("long", 2), ("medium", 1)]
    assert [(bucket.name, n) for bucket, n in count_buckets([400, 500], BUCKETS)] == [("medium", 2)]
