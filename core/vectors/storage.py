"""Crash-safe files for the embedded vector engine: a snapshot plus an append-only journal of writes.

Under the index's directory:

    snapshot.bin  the whole index as of generation G: a checksummed msgpack manifest (config, ids,
                  metadata, data) followed by checksummed raw arrays (dense float32, sparse CSR,
                  each record's insertion sequence number)
    journal.bin   a header naming generation J, then one record per write since the snapshot:
                  [u32 length][u32 crc32][msgpack op]; each is fsynced before the write returns
    graph-G-N.usearch  the HNSW graph of the snapshot's namespace N (large namespaces only), written
                  and fsynced before the snapshot that names it, with its size and crc32 in the manifest
    LOCK          flock-ed by the one process that has the index open

Opening loads the snapshot, replays the journal when J == G, and cuts the journal off at its first
torn or corrupt record (a crash mid-append leaves at most one). Compaction writes the next snapshot,
G + 1, to a temp file, fsyncs it, renames it over snapshot.bin and fsyncs the directory; only then
does it swap in an empty journal for G + 1 the same way. A crash between the two renames leaves a
journal of generation G < G + 1, which is already inside the new snapshot: opening ignores it rather
than applying it twice. A crash at any other moment leaves either the old pair or the new pair.
A graph file is only an accelerator: one that is missing, of another generation, or fails its
checksum is ignored (the graph is rebuilt from the vectors), and files no snapshot names are deleted.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import numpy as np

from core.vectors.records import VectorIndexError, VectorStoreCorruptError, VectorStoreLockedError

logger = logging.getLogger("clipdex.vectors")

_SNAPSHOT_MAGIC = b"CDXVSNP1"
_JOURNAL_MAGIC = b"CDXVJRN1"
_SNAPSHOT_HEAD = struct.Struct("<8sQI")  # magic, manifest length, manifest crc32
_JOURNAL_HEAD = struct.Struct("<8sQ")  # magic, generation
_FRAME = struct.Struct("<II")  # payload length, payload crc32
# 2 added each record's insertion sequence number; a format 1 snapshot still loads (in slot order).
_FORMAT = 2
_READABLE_FORMATS = (1, 2)


# ---------------------------------------------------------------- journal records


class StoredRow(msgspec.Struct, array_like=True):
    """A record as the journal carries it: arrays as raw little-endian bytes."""

    id: str
    vector: bytes | None = None  # float32 x dimension
    sparse_indices: bytes | None = None  # int32
    sparse_values: bytes | None = None  # float32
    metadata: dict[str, Any] | None = None
    data: str | None = None

    @classmethod
    def of(
        cls,
        id: str,
        vector: np.ndarray | None,
        sparse: tuple[np.ndarray, np.ndarray] | None,
        metadata: dict[str, Any] | None,
        data: str | None,
    ) -> StoredRow:
        return cls(
            id=id,
            vector=vector.astype(np.float32).tobytes() if vector is not None else None,
            sparse_indices=sparse[0].astype(np.int32).tobytes() if sparse is not None else None,
            sparse_values=sparse[1].astype(np.float32).tobytes() if sparse is not None else None,
            metadata=metadata,
            data=data,
        )


class UpsertOp(msgspec.Struct, tag="upsert", array_like=True):
    namespace: str
    rows: list[StoredRow]


class DeleteOp(msgspec.Struct, tag="delete", array_like=True):
    namespace: str
    ids: list[str]


class ResetOp(msgspec.Struct, tag="reset", array_like=True):
    namespace: str | None  # None: every namespace


class DropNamespaceOp(msgspec.Struct, tag="drop", array_like=True):
    namespace: str


JournalOp = UpsertOp | DeleteOp | ResetOp | DropNamespaceOp

_encode_op = msgspec.msgpack.Encoder().encode
_decode_op = msgspec.msgpack.Decoder(JournalOp).decode


# ---------------------------------------------------------------- snapshot content


class IndexConfig(msgspec.Struct, frozen=True):
    dimension: int
    similarity: str
    index_type: str


class NamespaceState(msgspec.Struct):
    """One namespace as the snapshot holds it: rows in order, sparse vectors as CSR arrays."""

    name: str
    ids: list[str]
    metadata: list[dict[str, Any] | None]
    data: list[str | None]
    # float32 or float16 (rows, dimension); when writing, also a list of row blocks, one after the other.
    dense: np.ndarray | list[np.ndarray] | None = None
    sparse_offsets: np.ndarray | None = None  # int64 (rows + 1,)
    sparse_indices: np.ndarray | None = None  # int32
    sparse_values: np.ndarray | None = None  # float32
    slots: np.ndarray | None = None  # int64 (rows,): each record's slot, when not 0..rows-1
    sequences: np.ndarray | None = None  # int64 (rows,): insertion order (None in format 1 snapshots)
    next_sequence: int = 0  # the sequence number the namespace's next new record gets
    # Writing: saves the namespace's graph (keyed by slot) to a path. Reading: the verified graph file.
    save_graph: Any = None
    graph: Path | None = None


class _Blob(msgspec.Struct, array_like=True):
    offset: int  # from the end of the manifest
    size: int
    crc: int
    dtype: str
    shape: list[int]


class _GraphFile(msgspec.Struct, array_like=True):
    name: str
    size: int
    crc: int


class _NamespaceManifest(msgspec.Struct):
    name: str
    ids: list[str]
    metadata: list[dict[str, Any] | None]
    data: list[str | None]
    arrays: dict[str, _Blob]
    graph: _GraphFile | None = None
    next_sequence: int = 0


class _Manifest(msgspec.Struct):
    format: int
    generation: int
    config: IndexConfig
    namespaces: list[_NamespaceManifest]


_ARRAY_FIELDS = ("dense", "sparse_offsets", "sparse_indices", "sparse_values", "slots", "sequences")
_GRAPH_PATTERN = "graph-*.usearch"


def _file_crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as file:
        while chunk := file.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc


def _write_graph(path: Path, save: Callable[[Path], object]) -> _GraphFile:
    save(path)
    with open(path, "rb") as file:
        os.fsync(file.fileno())
    return _GraphFile(path.name, path.stat().st_size, _file_crc(path))


def _bytes_of(array: np.ndarray) -> memoryview:
    """The array's memory as bytes, without a copy when it is contiguous (empty arrays too)."""
    return memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def write_snapshot(path: Path, generation: int, config: IndexConfig, states: list[NamespaceState]) -> int:
    """Write and fsync a snapshot at `path`; returns its size in bytes."""
    blobs: list[memoryview] = []
    offset = 0
    namespaces = []
    for number, state in enumerate(states):
        arrays: dict[str, _Blob] = {}
        for field in _ARRAY_FIELDS:
            array = getattr(state, field)
            if array is None:
                continue
            # The dense matrix comes as its blocks: written one after the other, never joined in memory.
            parts = array if isinstance(array, list) else [array]
            if not parts:
                continue
            views = [_bytes_of(part) for part in parts]
            size = sum(view.nbytes for view in views)
            crc = 0
            for view in views:
                crc = zlib.crc32(view, crc)
            shape = [sum(len(part) for part in parts), *parts[0].shape[1:]]
            arrays[field] = _Blob(offset, size, crc, parts[0].dtype.str, shape)
            blobs.extend(views)
            offset += size
        graph = None
        if state.save_graph is not None:
            graph = _write_graph(path.with_name(f"graph-{generation}-{number}.usearch"), state.save_graph)
        namespaces.append(
            _NamespaceManifest(
                state.name, state.ids, state.metadata, state.data, arrays, graph, state.next_sequence
            )
        )
    manifest = msgspec.msgpack.encode(_Manifest(_FORMAT, generation, config, namespaces))
    with open(path, "wb") as file:
        file.write(_SNAPSHOT_HEAD.pack(_SNAPSHOT_MAGIC, len(manifest), zlib.crc32(manifest)))
        file.write(manifest)
        for blob in blobs:
            file.write(blob)
        file.flush()
        os.fsync(file.fileno())
    return _SNAPSHOT_HEAD.size + len(manifest) + offset


def read_snapshot(path: Path) -> tuple[int, IndexConfig, list[NamespaceState]]:
    """(generation, config, namespaces) from a snapshot; raises VectorStoreCorruptError if damaged."""
    with open(path, "rb") as file:
        head = file.read(_SNAPSHOT_HEAD.size)
        if len(head) < _SNAPSHOT_HEAD.size or head[:8] != _SNAPSHOT_MAGIC:
            raise VectorStoreCorruptError(f"{path} is not a vector index snapshot")
        _, length, crc = _SNAPSHOT_HEAD.unpack(head)
        raw = file.read(length)
        if len(raw) != length or zlib.crc32(raw) != crc:
            raise VectorStoreCorruptError(f"{path}: the manifest fails its checksum")
        manifest = msgspec.msgpack.decode(raw, type=_Manifest)
        if manifest.format not in _READABLE_FORMATS:
            raise VectorStoreCorruptError(f"{path}: unknown snapshot format {manifest.format}")
        base = _SNAPSHOT_HEAD.size + length
        states = []
        for entry in manifest.namespaces:
            state = NamespaceState(
                entry.name, entry.ids, entry.metadata, entry.data, next_sequence=entry.next_sequence
            )
            for field, blob in entry.arrays.items():
                array = np.empty(blob.shape, np.dtype(blob.dtype))
                view = _bytes_of(array)
                file.seek(base + blob.offset)
                if file.readinto(view) != blob.size or zlib.crc32(view) != blob.crc:
                    raise VectorStoreCorruptError(f"{path}: {field} of namespace {entry.name!r} is damaged")
                setattr(state, field, array)
            state.graph = (
                _checked_graph(path.with_name(entry.graph.name), entry.graph) if entry.graph else None
            )
            states.append(state)
    return manifest.generation, manifest.config, states


def _checked_graph(path: Path, expected: _GraphFile) -> Path | None:
    """The graph file when it is the one the manifest names, intact; None means rebuild the graph."""
    try:
        if path.stat().st_size == expected.size and _file_crc(path) == expected.crc:
            return path
    except OSError:
        pass
    logger.warning("vector index: graph file %s is missing or damaged; rebuilding the graph", path)
    return None


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_journal(path: Path) -> tuple[int, list[JournalOp], int, int]:
    """(generation, ops, end of the last good record, file size)."""
    raw = path.read_bytes()
    if len(raw) < _JOURNAL_HEAD.size or raw[:8] != _JOURNAL_MAGIC:
        raise VectorStoreCorruptError(f"{path} has no journal header")
    _, generation = _JOURNAL_HEAD.unpack_from(raw)
    ops: list[JournalOp] = []
    position = _JOURNAL_HEAD.size
    view = memoryview(raw)
    while position + _FRAME.size <= len(raw):
        length, crc = _FRAME.unpack_from(raw, position)
        start, end = position + _FRAME.size, position + _FRAME.size + length
        if length == 0 or end > len(raw) or zlib.crc32(view[start:end]) != crc:
            break
        try:
            ops.append(_decode_op(view[start:end]))
        except (msgspec.DecodeError, msgspec.ValidationError):
            break
        position = end
    return generation, ops, position, len(raw)


def held_elsewhere(directory: Path) -> bool:
    """Whether an open index (of another process, or another in this one) holds `directory`'s LOCK.

    A probe for start-up checks: it takes the lock and lets it go at once, and creates nothing.
    """
    try:
        lock = open(directory / "LOCK", "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return False


class DiskStore:
    """The snapshot and journal under one directory, owned by one open index at a time."""

    def __init__(self, directory: Path, journal_limit_bytes: int) -> None:
        self.directory = directory
        self._snapshot = directory / "snapshot.bin"
        self._journal = directory / "journal.bin"
        self._journal_limit = journal_limit_bytes
        # File objects rather than raw descriptors, so an index dropped without close() releases them.
        self._lock_file: BinaryIO | None = None
        self._journal_file: BinaryIO | None = None
        self._generation = 0  # of the snapshot on disk
        self._journal_generation = 0  # of the journal on disk; behind the snapshot's = stale
        self._journal_size = 0
        self._snapshot_size = 0
        self._broken = False

    def open(self, config: IndexConfig) -> tuple[list[NamespaceState], list[JournalOp]]:
        """Take the lock and load: the snapshot's namespaces, and the journal ops to apply on top."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            return self._load(config)
        except BaseException:
            self.close()
            raise

    def _lock(self) -> None:
        lock = open(self.directory / "LOCK", "ab")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise VectorStoreLockedError(f"the vector index at {self.directory} is open elsewhere") from None
        self._lock_file = lock

    def _load(self, config: IndexConfig) -> tuple[list[NamespaceState], list[JournalOp]]:
        for leftover in (self._snapshot, self._journal):
            # What a compaction that died before its rename left behind.
            leftover.with_name(leftover.name + ".tmp").unlink(missing_ok=True)
        if not self._snapshot.exists():
            if self._journal.exists():
                raise VectorStoreCorruptError(f"{self._journal} exists but {self._snapshot} does not")
            self._replace(self._snapshot, lambda tmp: write_snapshot(tmp, 0, config, []))
        generation, stored, states = read_snapshot(self._snapshot)
        self._drop_graphs(keep={state.graph.name for state in states if state.graph is not None})
        if stored != config:
            raise VectorIndexError(
                f"the index at {self.directory} was created as {stored.index_type} {stored.dimension}-d "
                f"{stored.similarity}, not {config.index_type} {config.dimension}-d {config.similarity}"
            )
        self._generation = generation
        self._snapshot_size = self._snapshot.stat().st_size
        ops: list[JournalOp] = []
        if not self._journal.exists():
            self._start_journal()
            return states, ops
        journal_generation, ops, end, size = read_journal(self._journal)
        if journal_generation > generation:
            raise VectorStoreCorruptError(f"{self._journal} is newer than {self._snapshot}")
        if journal_generation < generation:
            # Compaction renamed the new snapshot in but died before replacing the journal: every
            # op in it is inside the snapshot already.
            self._start_journal()
            return states, []
        if end < size:
            logger.warning("vector journal: dropping %d bytes of a torn or corrupt record", size - end)
            with open(self._journal, "r+b") as file:
                file.truncate(end)
                os.fsync(file.fileno())
        self._journal_file = open(self._journal, "ab", buffering=0)  # noqa: SIM115 - held until close()
        self._journal_generation = generation
        self._journal_size = end
        return states, ops

    def _drop_graphs(self, keep: set[str]) -> None:
        """Delete graph files no snapshot on disk names (older generations, an unfinished compaction)."""
        for path in self.directory.glob(_GRAPH_PATTERN):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    def _replace(self, target: Path, write: Callable[[Path], object]) -> None:
        tmp = target.with_name(target.name + ".tmp")
        write(tmp)
        os.replace(tmp, target)
        _fsync_directory(self.directory)

    def _start_journal(self) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as file:
                file.write(_JOURNAL_HEAD.pack(_JOURNAL_MAGIC, self._generation))
                file.flush()
                os.fsync(file.fileno())

        self._replace(self._journal, write)
        if self._journal_file is not None:
            self._journal_file.close()
        self._journal_file = open(self._journal, "ab", buffering=0)  # noqa: SIM115 - held until close()
        self._journal_generation = self._generation
        self._journal_size = _JOURNAL_HEAD.size

    def append(self, op: JournalOp) -> None:
        """Add one write to the journal, durably: on return it survives a crash."""
        if self._journal_file is None or self._broken:
            raise RuntimeError("the vector index's journal is not writable; reopen the index")
        if self._journal_generation != self._generation:
            # A compaction renamed its snapshot in but could not swap the journal: finish that
            # first, since ops appended to the stale journal would be ignored on the next open.
            self._start_journal()
        journal = self._journal_file
        payload = _encode_op(op)
        frame = memoryview(_FRAME.pack(len(payload), zlib.crc32(payload)) + payload)
        try:
            written = 0
            while written < len(frame):
                written += journal.write(frame[written:]) or 0
        except OSError:
            self._cut_back(journal)
            raise
        try:
            os.fsync(journal.fileno())
        except OSError:
            self._broken = True  # after a failed fsync the kernel may have dropped the pages
            raise
        self._journal_size += len(frame)

    def _cut_back(self, journal: BinaryIO) -> None:
        # Leave no partial record in front of the next one: replay would stop there and lose it.
        try:
            journal.truncate(self._journal_size)
        except OSError:
            self._broken = True

    def should_compact(self) -> bool:
        return self._journal_size > max(self._journal_limit, self._snapshot_size)

    def has_journal_records(self) -> bool:
        return self._journal_size > _JOURNAL_HEAD.size

    def compact(self, config: IndexConfig, states: list[NamespaceState]) -> None:
        """Fold the journal into a new snapshot (see the module docstring for the crash analysis)."""
        if self._journal_file is None:
            raise RuntimeError("the vector index's files are not open")
        generation = self._generation + 1
        tmp = self._snapshot.with_name(self._snapshot.name + ".tmp")
        size = write_snapshot(tmp, generation, config, states)
        os.replace(tmp, self._snapshot)
        # From here the journal on disk is stale; append() swaps it first if the swap below fails.
        self._generation = generation
        self._snapshot_size = size
        _fsync_directory(self.directory)
        # Only once the new snapshot is durable: until then the old one may come back, with its graphs.
        self._drop_graphs(keep={f"graph-{generation}-{n}.usearch" for n in range(len(states))})
        self._start_journal()
        self._broken = False  # whatever the old journal holds is superseded by the snapshot

    def close(self) -> None:
        for file in (self._journal_file, self._lock_file):
            if file is not None:
                file.close()
        self._journal_file = self._lock_file = None
