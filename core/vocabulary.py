"""The words of the searchable documents, in the database, and each worker's in-memory copy of them.

The database is the source of truth, so every worker of a scaled-out app sees one vocabulary. The
indexer records each document it indexes (`record`, in one transaction): which BM25 terms a public
document holds (for typo correction: document counts per term) and its title, tags, owner and
visibility (for completions). Every write takes the next revision from a one-row table, which also
serialises vocabulary writers; a worker's copy (`Vocabulary`) asks for the revision at most once per
`refresh_seconds` and, when it moved, reads only the rows written since.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
from piccolo.columns import JSON, BigInt, Integer, Text, Varchar
from piccolo.table import Table

from core.completions import Completions
from core.database import write_transaction
from core.heap import freeze_long_lived_objects
from core.typos import ONE_TYPO_LENGTH, TypoIndex, correctable
from core.vectors.sparse import tokenize

logger = logging.getLogger("clipdex.vocabulary")

MAX_TERM_LENGTH = 40  # longer runs of letters are not words anyone misspells
_ROWS_PER_STATEMENT = 500  # 3 parameters a row: well under SQLite's and asyncpg's limits


class SearchTerm(Table, tablename="search_terms"):
    term = Varchar(length=MAX_TERM_LENGTH, primary_key=True)
    document_count = Integer(default=0)  # of public documents; rows at 0 stay, so copies see them go
    revision = BigInt(default=0, index=True)


class SearchDocument(Table, tablename="search_documents"):
    """What the vocabulary has counted for one document; a deleted one stays as an empty tombstone."""

    key = Varchar(length=100, primary_key=True)
    owner = Varchar(length=100, default="")
    visibility = Varchar(length=10, default="")  # "" = deleted
    title = Text(default="")
    tags = JSON(default=[])
    terms = Text(default="")  # the counted terms, space-separated ("" unless public)
    revision = BigInt(default=0, index=True)


class SearchVocabularyRevision(Table, tablename="search_vocabulary_revision"):
    id = Integer(primary_key=True)
    revision = BigInt(default=0)


VOCABULARY_TABLES = (SearchTerm, SearchDocument, SearchVocabularyRevision)


@dataclass(frozen=True)
class Document:
    key: str
    owner: str
    visibility: str
    title: str
    tags: list[str]
    text: str  # what BM25 indexes


def counted_terms(text: str) -> set[str]:
    """The terms of a text that typo correction may need: letters only, 4-40 characters."""
    return {
        term
        for term in tokenize(text)
        if ONE_TYPO_LENGTH - 1 <= len(term) <= MAX_TERM_LENGTH and correctable(term)
    }


async def _next_revision() -> int:
    # An upsert that returns the new value: the row lock it takes is held to commit, so revisions
    # commit in order on PostgreSQL (a copy never skips one); on SQLite the write lock does that.
    rows = await SearchVocabularyRevision.raw(
        "INSERT INTO search_vocabulary_revision (id, revision) VALUES (1, 1) ON CONFLICT (id) DO UPDATE "
        "SET revision = search_vocabulary_revision.revision + 1 RETURNING revision"
    )
    return int(rows[0]["revision"])


async def record(present: Iterable[Document], gone: Iterable[str]) -> None:
    """Bring the vocabulary in line with these documents as they are now, and these deleted ones."""
    present, gone = list(present), list(gone)
    keys = [document.key for document in present] + gone
    if not keys:
        return
    async with write_transaction(SearchTerm._meta.db):
        revision = await _next_revision()
        before = await SearchDocument.select(SearchDocument.key, SearchDocument.terms).where(
            SearchDocument.key.is_in(keys)
        )
        delta: Counter[str] = Counter()
        for row in before:
            delta.subtract(row["terms"].split())
        rows = []
        for document in present:
            terms = counted_terms(document.text) if document.visibility == "public" else set()
            delta.update(terms)
            tags = msgspec.json.encode(document.tags).decode()
            rows.append((document.key, document.owner, document.visibility, document.title, tags, terms))
        rows += [(key, "", "", "", "[]", set()) for key in gone]
        changed = [(term, change) for term, change in delta.items() if change]
        for start in range(0, len(changed), _ROWS_PER_STATEMENT):
            chunk = changed[start : start + _ROWS_PER_STATEMENT]
            await SearchTerm.raw(
                "INSERT INTO search_terms (term, document_count, revision) VALUES "
                + ", ".join("({}, {}, {})" for _ in chunk)
                + " ON CONFLICT (term) DO UPDATE SET document_count = "
                "search_terms.document_count + excluded.document_count, revision = excluded.revision",
                *(value for term, change in chunk for value in (term, change, revision)),
            )
        for start in range(0, len(rows), _ROWS_PER_STATEMENT // 3):
            chunk = rows[start : start + _ROWS_PER_STATEMENT // 3]
            await SearchDocument.raw(
                "INSERT INTO search_documents (key, owner, visibility, title, tags, terms, revision) VALUES "
                + ", ".join("({}, {}, {}, {}, {}, {}, {})" for _ in chunk)
                + " ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, visibility = excluded.visibility,"
                " title = excluded.title, tags = excluded.tags, terms = excluded.terms,"
                " revision = excluded.revision",
                *(
                    value
                    for key, owner, visibility, title, tags, terms in chunk
                    for value in (key, owner, visibility, title, tags, " ".join(sorted(terms)), revision)
                ),
            )


class Vocabulary:
    """This worker's copy: typo corrections over the public terms, completions over titles and tags."""

    def __init__(self, refresh_seconds: float = 1.0, first_load_wait_seconds: float = 1.0) -> None:
        self.typos = TypoIndex()
        self.completions = Completions()
        self._refresh_seconds = refresh_seconds
        self._first_load_wait = first_load_wait_seconds
        self._revision: int | None = None  # None: never loaded
        self._checked_at = 0.0
        self._lock = asyncio.Lock()
        self._first_load: asyncio.Task[None] | None = None

    def changed(self) -> None:
        """This process just recorded documents: refresh on the next use rather than within a second."""
        self._checked_at = float("-inf")

    async def current(self) -> Vocabulary:
        """Self, refreshed when due. Never raises: a failed refresh is logged and the old copy serves."""
        if self._revision is None:
            # The first copy takes seconds at 100k videos (built in a thread, off the event loop):
            # requests wait for it a moment, then go on without (no corrections or suggestions yet).
            if self._first_load is None or self._first_load.done():
                self._first_load = asyncio.create_task(self._refresh_now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._first_load), self._first_load_wait)
            return self
        if time.monotonic() - self._checked_at < self._refresh_seconds or self._lock.locked():
            return self  # fresh enough, or another request is refreshing it right now
        await self._refresh_now()
        return self

    async def _refresh_now(self) -> None:
        async with self._lock:
            if time.monotonic() - self._checked_at >= self._refresh_seconds or self._revision is None:
                try:
                    await self._refresh()
                except Exception as exc:
                    logger.warning("vocabulary refresh failed, serving the previous copy: %r", exc)
                self._checked_at = time.monotonic()

    async def _refresh(self) -> None:
        row = await SearchVocabularyRevision.select(SearchVocabularyRevision.revision).first()
        latest = row["revision"] if row else 0
        if latest == self._revision:
            return
        if self._revision is not None and latest < self._revision:  # the tables were emptied or restored
            self.typos, self.completions, self._revision = TypoIndex(), Completions(), None
        since = -1 if self._revision is None else self._revision
        terms = await SearchTerm.select(SearchTerm.term, SearchTerm.document_count).where(
            SearchTerm.revision > since
        )
        documents = await SearchDocument.select(
            SearchDocument.key,
            SearchDocument.owner,
            SearchDocument.visibility,
            SearchDocument.title,
            SearchDocument.tags,
        ).where(SearchDocument.revision > since)
        rows = [
            (row["key"], row["owner"], row["visibility"], row["title"], _tags(row["tags"]))
            for row in documents
        ]
        if since == -1:  # a whole copy: built in one go, in a thread
            counts = [(term["term"], term["document_count"]) for term in terms]
            self.typos, self.completions = await asyncio.to_thread(
                lambda: (TypoIndex(counts), Completions.load(rows))
            )
            del terms, documents, rows, counts  # the rows read are garbage now, not to be frozen
            freeze_long_lived_objects()
        else:
            for term in terms:
                self.typos.set_count(term["term"], term["document_count"])
            for row in rows:
                self.completions.put(*row)
        self._revision = latest


def _tags(stored: str | bytes | list[str]) -> list[str]:
    # SQLite returns JSON as text, PostgreSQL as the decoded value.
    return msgspec.json.decode(stored) if isinstance(stored, str | bytes) else stored
