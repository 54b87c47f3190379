"""The app's long-lived objects are frozen out of full garbage collections while it serves, and handed
back to the collector when it stops (so a process running apps one after another keeps none); freed C
heap is handed back once work pauses, not after every piece of it."""

from __future__ import annotations

import gc
import threading
import time
import weakref

import pytest

from core.heap import IdleHeapTrim, freeze_long_lived_objects, thaw_long_lived_objects


@pytest.fixture(autouse=True)
def nothing_frozen_before():
    thaw_long_lived_objects()
    yield
    thaw_long_lived_objects()


async def test_serving_freezes_what_start_up_built_and_stopping_thaws_it(serve):
    async with serve() as client:
        assert (await client.get("/health")).status_code == 200
        frozen_while_serving = gc.get_freeze_count()
    assert frozen_while_serving > 10_000
    assert gc.get_freeze_count() == 0


def test_freezing_collects_garbage_first_and_frozen_objects_still_go_with_their_last_reference():
    class Node:
        pass

    cycle = Node()
    cycle.self = cycle  # garbage once dropped, but only the collector can free a cycle
    cycle_ref = weakref.ref(cycle)
    kept = Node()
    kept_ref = weakref.ref(kept)
    del cycle
    freeze_long_lived_objects()
    assert cycle_ref() is None
    assert kept_ref() is kept
    del kept
    assert kept_ref() is None


def test_the_heap_is_trimmed_once_work_pauses_not_while_it_goes_on():
    trimmed = threading.Event()
    trims: list[float] = []

    def trim() -> None:
        trims.append(time.monotonic())
        trimmed.set()

    idle_trim = IdleHeapTrim(delay_seconds=0.3, trim=trim)
    for _ in range(8):  # 0.8 s of work, each piece well inside the delay of the one before
        idle_trim.worked()
        time.sleep(0.1)
    last_work = time.monotonic()
    assert trims == []
    assert trimmed.wait(5)
    assert len(trims) == 1
    assert trims[0] >= last_work + 0.1  # the delay counts from the last piece of work

    trimmed.clear()
    idle_trim.worked()  # work after a trim gets a trim of its own
    assert trimmed.wait(5)
    assert len(trims) == 2
