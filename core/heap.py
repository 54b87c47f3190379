"""The process's memory: long-lived data kept out of the garbage collector's way, freed C heap given back."""

from __future__ import annotations

import contextlib
import ctypes
import gc


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
