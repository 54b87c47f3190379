"""Persistence of the embedded vector engine: reload, journal replay, torn records, compaction crashes,
and real SIGKILLs of a writing process followed by a clean reload."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import signal
import sys
import time
from asyncio.subprocess import PIPE
from pathlib import Path

import numpy as np
import pytest

from core.vectors import (
    EmbeddedVectorIndex,
    SparseVector,
    VectorIndexError,
    VectorRecord,
    VectorStoreCorruptError,
    VectorStoreLockedError,
    bm25_document_vector,
)
from core.vectors.storage import DiskStore, read_journal, read_snapshot

ROOT = Path(__file__).resolve().parents[2]
DIMENSION = 16


def records(count: int, seed: int = 11, prefix: str = "r") -> list[VectorRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        terms = rng.choice(200, size=8, replace=False).tolist()
        out.append(
            VectorRecord(
                f"{prefix}{i:04d}",
                rng.standard_normal(DIMENSION).astype(np.float32).tolist(),
                SparseVector(terms, rng.random(8).astype(np.float32).tolist()),
                metadata={"i": i, "even": i % 2 == 0, "tags": [f"t{i % 7}"]},
                data=f"record {i}",
            )
        )
    return out


def hybrid(path: Path, **options: object) -> EmbeddedVectorIndex:
    return EmbeddedVectorIndex(dimension=DIMENSION, index_type="HYBRID", path=path, **options)


async def snapshot_of(index: EmbeddedVectorIndex) -> dict[str, object]:
    """Everything observable: every namespace's records, and a few queries' results."""
    rng = np.random.default_rng(3)
    info = await index.info()
    counts = {name: namespace.vector_count for name, namespace in info.namespaces.items()}
    state: dict[str, object] = {"count": info.vector_count, "counts": counts}
    for namespace in await index.list_namespaces():
        page = await index.range(
            limit=10_000, include_vectors=True, include_metadata=True, include_data=True, namespace=namespace
        )
        state[f"records:{namespace}"] = page.vectors
    for n in range(4):
        query = {
            "vector": rng.standard_normal(DIMENSION).tolist(),
            "sparse_vector": SparseVector(rng.choice(200, 4, replace=False).tolist(), [1.0] * 4),
            "top_k": 7,
        }
        for filter in ("", "even = true AND tags CONTAINS 't3'"):
            for mode in ("HYBRID", "DENSE", "SPARSE"):
                results = await index.query(**query, filter=filter, query_mode=mode)
                state[f"query:{n}:{filter}:{mode}"] = [(r.id, round(r.score, 6)) for r in results]
    return state


async def test_write_close_reopen_gives_the_same_index(tmp_path):
    async with hybrid(tmp_path) as index:
        await index.upsert(records(300))
        await index.upsert(records(20, prefix="o"), namespace="other")
        await index.upsert(records(5, prefix="e"), namespace="emptied")
        await index.reset(namespace="emptied")
        await index.delete(prefix="r001")
        await index.update("r0200", metadata={"i": None, "new": 1}, metadata_update_mode="PATCH")
        before = await snapshot_of(index)

    async with hybrid(tmp_path) as reopened:
        assert await snapshot_of(reopened) == before
    assert before["counts"] == {"": 290, "emptied": 0, "other": 20}


@pytest.mark.parametrize("precision", ["float32", "float16"])
async def test_writes_after_a_reopen_match_an_index_never_reopened(tmp_path, precision):
    # A snapshot without free slots hands its vector array to the reopened index as is; writes then
    # change it in place and grow it.
    async def more_writes(index: EmbeddedVectorIndex) -> None:
        await index.upsert(records(150, seed=5, prefix="n"))
        changed = records(1, seed=9)[0]
        await index.update("r0005", vector=changed.vector)
        await index.delete(["r0007"])

    async with hybrid(tmp_path, precision=precision) as index:
        await index.upsert(records(300))
    never_reopened = EmbeddedVectorIndex(dimension=DIMENSION, index_type="HYBRID", precision=precision)
    await never_reopened.upsert(records(300))
    await more_writes(never_reopened)

    async with hybrid(tmp_path, precision=precision) as reopened:
        await more_writes(reopened)
        after = await snapshot_of(reopened)
        assert after == await snapshot_of(never_reopened)
    assert after["count"] == 449
    async with hybrid(tmp_path, precision=precision) as again:
        assert await snapshot_of(again) == after


async def test_a_reopen_without_close_replays_the_journal(tmp_path):
    first = hybrid(tmp_path)
    await first.open()
    for chunk in range(0, 200, 20):
        await first.upsert(records(200)[chunk : chunk + 20])
    await first.delete(filter="i >= 150")
    await first.upsert(records(3, prefix="x"), namespace="ns")
    before = await snapshot_of(first)
    assert (tmp_path / "journal.bin").stat().st_size > 1000  # nothing was folded into the snapshot
    del first  # dropped without close(), as a crash would leave it
    gc.collect()

    async with hybrid(tmp_path) as second:
        assert await snapshot_of(second) == before


async def walk_from(index: EmbeddedVectorIndex, cursor: str, limit: int = 7) -> list[str]:
    seen = []
    while True:
        page = await index.range(cursor=cursor, limit=limit)
        seen += [record.id for record in page.vectors]
        if not page.next_cursor:
            return seen
        cursor = page.next_cursor


@pytest.mark.parametrize("closed", [True, False])
async def test_insertion_order_and_range_cursors_survive_a_reopen(tmp_path, closed):
    """Sequence numbers are in the snapshot and replayed identically from the journal, so a walk
    begun before a restart goes on after it; packing the slots (many deletes) keeps them too."""
    first = hybrid(tmp_path)
    await first.open()
    await first.upsert(records(3000))
    await first.delete([f"r{i:04d}" for i in range(0, 3000, 2)] + ["r0001"])  # packs the slots
    await first.upsert(records(2, prefix="late"))
    await first.update("r0003", metadata={"moved": False})  # an update keeps a record's place
    page = await first.range(limit=40)
    expected = [record.id for record in page.vectors] + await walk_from(first, page.next_cursor)
    assert expected[:3] == ["r0003", "r0005", "r0007"]
    assert expected[-2:] == ["late0000", "late0001"]
    assert (await first.range(cursor=str(10**9))).vectors == []
    if closed:
        await first.close()
    else:
        del first  # the journal holds everything since the empty snapshot
        gc.collect()

    async with hybrid(tmp_path) as reopened:
        assert [record.id for record in page.vectors] + await walk_from(
            reopened, page.next_cursor
        ) == expected
        await reopened.upsert(records(1, prefix="after"))
        assert (await walk_from(reopened, ""))[-1] == "after0000"  # numbering goes on, never reused


async def test_a_format_1_snapshot_loads_in_slot_order(tmp_path, monkeypatch):
    from core.vectors import storage

    async with hybrid(tmp_path) as index:
        await index.upsert(records(5))
    generation, config, states = read_snapshot(tmp_path / "snapshot.bin")
    for state in states:
        state.sequences, state.next_sequence = None, 0
    monkeypatch.setattr(storage, "_FORMAT", 1)
    storage.write_snapshot(tmp_path / "snapshot.bin", generation, config, states)
    assert read_snapshot(tmp_path / "snapshot.bin")[2][0].sequences is None

    async with hybrid(tmp_path) as reopened:
        await reopened.upsert(records(1, prefix="n"))
        assert await walk_from(reopened, "") == [f"r{i:04d}" for i in range(5)] + ["n0000"]


async def test_a_torn_last_journal_record_is_cut_off(tmp_path):
    first = hybrid(tmp_path)
    await first.open()
    for record in records(10):
        await first.upsert([record])
    del first
    gc.collect()
    journal = tmp_path / "journal.bin"
    size = journal.stat().st_size
    os.truncate(journal, size - 5)  # the last append was cut short by a crash

    async with hybrid(tmp_path) as second:
        found = await second.fetch([record.id for record in records(10)])
        assert [record is not None for record in found] == [True] * 9 + [False]
        await second.upsert([records(11)[10]])  # appends after the cut stay readable
    async with hybrid(tmp_path) as third:
        assert (await third.info()).vector_count == 10


async def test_a_half_written_compaction_is_discarded(tmp_path):
    async with hybrid(tmp_path) as index:
        await index.upsert(records(4))
    (tmp_path / "snapshot.bin.tmp").write_bytes(b"CDXVSNP1 half a snapshot")  # killed mid-compaction
    (tmp_path / "journal.bin.tmp").write_bytes(b"")

    async with hybrid(tmp_path) as reopened:
        assert (await reopened.info()).vector_count == 4
    assert sorted(path.name for path in tmp_path.iterdir()) == ["LOCK", "journal.bin", "snapshot.bin"]


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0xFF]))


async def test_a_corrupt_journal_record_ends_the_replay_there(tmp_path):
    first = hybrid(tmp_path)
    await first.open()
    sizes = []
    for record in records(6):
        await first.upsert([record])
        sizes.append((tmp_path / "journal.bin").stat().st_size)
    del first
    gc.collect()
    flip_byte(tmp_path / "journal.bin", sizes[2] + 20)  # inside the fourth record

    async with hybrid(tmp_path) as second:
        assert [record.id for record in (await second.range()).vectors] == ["r0000", "r0001", "r0002"]


def fail_journal_swaps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the journal swap of a compaction fail, as a crash right after the snapshot rename would."""
    calls: list[int] = []

    def crash(self: DiskStore) -> None:
        calls.append(1)
        raise OSError("killed between the renames")

    monkeypatch.setattr(DiskStore, "_start_journal", crash)
    return calls


async def test_a_crash_between_the_snapshot_and_the_journal_swap_applies_nothing_twice(tmp_path, monkeypatch):
    index = hybrid(tmp_path)
    await index.open()
    await index.upsert(records(50))
    await index.delete(["r0001"])
    await index.upsert([records(3)[1]])  # delete then re-add: replaying the journal twice would be visible
    await index.delete(["r0002"])
    calls = fail_journal_swaps(monkeypatch)
    await index.close()  # new snapshot renamed in; the old journal (now stale) stays on disk
    monkeypatch.undo()
    assert calls
    assert (tmp_path / "journal.bin").stat().st_size > 1000

    async with hybrid(tmp_path) as reopened:
        ids = {record.id for record in (await reopened.range(limit=1000)).vectors}
        assert ids == {record.id for record in records(50)} - {"r0002"}
        await reopened.upsert(records(1, prefix="n"))
    async with hybrid(tmp_path) as again:
        assert (await again.info()).vector_count == 50


async def test_the_next_write_finishes_a_failed_journal_swap(tmp_path, monkeypatch):
    index = hybrid(tmp_path, journal_limit_bytes=1)  # compact whenever the journal outgrows the snapshot
    await index.open()
    await index.upsert(records(5))
    calls = fail_journal_swaps(monkeypatch)
    await index.upsert(records(60, prefix="y"))  # journal outgrows the snapshot: compaction, swap fails
    monkeypatch.undo()
    assert calls
    await index.upsert(records(2, prefix="w"))  # must land in a fresh journal, not the stale one

    snapshot_generation, _, _ = read_snapshot(tmp_path / "snapshot.bin")
    journal_generation, ops, _, _ = read_journal(tmp_path / "journal.bin")
    assert journal_generation == snapshot_generation
    assert [[row.id for row in op.rows] for op in ops] == [["w0000", "w0001"]]
    await index.close()
    async with hybrid(tmp_path) as reopened:
        assert (await reopened.info()).vector_count == 67


async def test_after_a_failed_fsync_writes_refuse_until_reopened(tmp_path, monkeypatch):
    index = hybrid(tmp_path)
    await index.open()
    await index.upsert(records(5))

    def failing_fsync(fd: int) -> None:
        raise OSError("EIO")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="EIO"):
        await index.upsert(records(1, prefix="y"))
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="reopen"):
        await index.upsert(records(1, prefix="w"))
    assert (await index.info()).vector_count == 5
    await index.close()  # folds what the index holds into a fresh snapshot

    async with hybrid(tmp_path) as reopened:
        await reopened.upsert(records(1, prefix="w"))
        assert (await reopened.info()).vector_count in (6, 7)  # the failed write's outcome is unknown


async def test_one_process_at_a_time(tmp_path):
    async with hybrid(tmp_path):
        with pytest.raises(VectorStoreLockedError):
            await hybrid(tmp_path).open()


async def test_a_different_configuration_is_refused(tmp_path):
    async with hybrid(tmp_path) as index:
        await index.upsert(records(1))
    with pytest.raises(VectorIndexError, match="created as HYBRID 16-d COSINE"):
        await EmbeddedVectorIndex(dimension=8, index_type="HYBRID", path=tmp_path).open()
    async with hybrid(tmp_path) as index:  # and the refusal left the lock free
        assert (await index.info()).vector_count == 1


async def test_a_damaged_snapshot_is_reported_not_loaded(tmp_path):
    async with hybrid(tmp_path) as index:
        await index.upsert(records(20))
    snapshot = tmp_path / "snapshot.bin"
    data = bytearray(snapshot.read_bytes())
    data[-10] ^= 0xFF
    snapshot.write_bytes(bytes(data))

    with pytest.raises(VectorStoreCorruptError):
        await hybrid(tmp_path).open()


async def test_an_unopened_or_closed_index_says_so(tmp_path):
    index = hybrid(tmp_path)
    with pytest.raises(RuntimeError, match="open the vector index"):
        await index.info()
    await index.open()
    await index.close()
    with pytest.raises(RuntimeError, match="closed"):
        await index.query(vector=[1.0] * DIMENSION)


# ---------------------------------------------------------------- real kills

WRITER = """
import asyncio, sys
from pathlib import Path
import numpy as np
from core.vectors import EmbeddedVectorIndex, VectorRecord

async def main(path, version):
    index = EmbeddedVectorIndex(dimension=8, path=Path(path), journal_limit_bytes=4096)
    await index.open()
    print("ready", flush=True)
    while True:
        version += 1
        id = f"r{version % 97}"
        if version % 5 == 0:
            await index.delete([id])
        else:
            vector = np.random.default_rng(version).standard_normal(8).astype(np.float32).tolist()
            await index.upsert([VectorRecord(id, vector, metadata={"version": version}, data=f"doc {version}")])
        print(version, flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def apply_op(state: dict[str, int], version: int) -> dict[str, int]:
    """The writer's op number `version` applied to {id: version} (what the writer does, modelled)."""
    state = dict(state)
    id = f"r{version % 97}"
    if version % 5 == 0:
        state.pop(id, None)
    else:
        state[id] = version
    return state


async def read_consistent_state(path: Path) -> dict[str, int]:
    """Open the index as a fresh process would, check every record is whole, return {id: version}."""
    index = EmbeddedVectorIndex(dimension=8, path=path)
    await index.open()
    try:
        page = await index.range(limit=1000, include_vectors=True, include_metadata=True, include_data=True)
        state = {}
        for record in page.vectors:
            version = record.metadata["version"]
            expected = np.random.default_rng(version).standard_normal(8).astype(np.float32)
            assert np.array_equal(np.array(record.vector, np.float32), expected)
            assert record.data == f"doc {version}"
            assert record.sparse_vector == bm25_document_vector(record.data)
            state[record.id] = version
        hits = await index.query(vector=[1.0] * 8, top_k=3, filter="version > 0")
        assert len(hits) == min(3, len(state))
        return state
    finally:
        await index.close()


async def write_until_killed(path: Path, version: int, delay: float) -> list[int]:
    """Start the writer after op `version`, SIGKILL it `delay` seconds into its writes; the ops it
    saw complete, in order."""
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), str(version), cwd=ROOT, stdout=PIPE, stderr=PIPE
    )
    assert writer.stdout is not None
    assert writer.stderr is not None
    lines: list[bytes] = []

    async def collect(stream: asyncio.StreamReader) -> None:
        async for line in stream:
            lines.append(line)

    collector = asyncio.create_task(collect(writer.stdout))
    deadline = time.monotonic() + 20
    while b"ready\n" not in lines:
        assert writer.returncode is None, (await writer.stderr.read()).decode()
        assert time.monotonic() < deadline, "the writer did not start"
        await asyncio.sleep(0.01)
    await asyncio.sleep(delay)
    writer.send_signal(signal.SIGKILL)
    await writer.wait()
    await collector
    # Only whole lines: a number cut short by the kill was not acknowledged.
    return [int(line) for line in lines if line.endswith(b"\n") and line.strip().isdigit()]


async def test_sigkill_during_writes_always_leaves_a_loadable_consistent_index(tmp_path):
    chooser = random.Random(20260101)
    state: dict[str, int] = {}
    version = 0
    for round in range(8):
        acknowledged = await write_until_killed(tmp_path / "index", version, chooser.uniform(0.05, 0.4))

        # Every write the writer saw return is there; the one in flight may or may not be.
        expected = state
        for done in acknowledged:
            expected = apply_op(expected, done)
        last = acknowledged[-1] if acknowledged else version
        in_flight = apply_op(expected, last + 1)
        state = await read_consistent_state(tmp_path / "index")
        assert state in (expected, in_flight), f"round {round}: lost or invented writes"
        version = last + 1  # the next writer never reuses the in-flight op's number
