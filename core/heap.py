"""The process's memory: long-lived data kept out of the garbage collector's way, freed C heap given back."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
import time
from collections.abc import Callable


def freeze_long_lived_objects() -> None:
    """Exempt every object alive now from the cyclic garbage collector's full collections.

    Called once what lives as long as the process is built (the search index, the vocabulary's
    first copy): at 100k videos they are ~270k objects, and every full collection walked all of
    them, ~80-100 ms with the event loop stopped (p99s of 360-380 ms on cached searches,
    BENCHMARKS.md section 1). Frozen objects are still freed when their last reference goes; only
    garbage cycles among them would stay, and the index and vocabulary build none.
    """
    gc.collect()  # what is garbage already is not kept for good
    gc.freeze()


def thaw_long_lived_objects() -> None:
    """Hand frozen objects back to the collector, when what froze them shuts down: a process that
    starts several apps one after another (the tests) would otherwise keep every stopped one."""
    gc.unfreeze()


def return_freed_memory() -> None:
    """Give the C heap's free pages back to the OS: optimising the model graph at load frees ~60 MB
    that glibc would otherwise keep in the process for good. A no-op without glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class IdleHeapTrim:
    """Gives the C heap's free pages back once work that frees a lot of it has paused for a moment.

    Trimming after every indexing batch cost a reindex ~8% of its model time (slices of 64 texts: 95
    against 104 texts/s untrimmed, BENCHMARKS.md section 4): each trim hands back the pages that the
    next batch then faults in again. So work only says `worked()`, and one timer thread trims when
    none came for `delay_seconds`: once after a reindex or a burst of outbox batches, not per batch.
    """

    def __init__(self, delay_seconds: float = 1.0, trim: Callable[[], None] | None = None) -> None:
        self._delay = delay_seconds
        self._trim = trim or return_freed_memory
        self._lock = threading.Lock()
        self._due = 0.0
        self._timer: threading.Timer | None = None

    def worked(self) -> None:
        with self._lock:
            self._due = time.monotonic() + self._delay
            if self._timer is None:
                self._start(self._delay)

    def _start(self, wait: float) -> None:
        self._timer = threading.Timer(wait, self._fire)
        self._timer.daemon = True  # a pending trim never holds up the process's exit
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            wait = self._due - time.monotonic()
            if wait > 0:
                self._start(wait)
                return
            self._timer = None
        self._trim()
