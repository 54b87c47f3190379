"""Keyword search: BM25 sparse vectors for text, and the inverted index that scores sparse queries.

Texts become sparse vectors the way Upstash's BM25 model makes them: lower-cased words (runs of
unicode letters and digits) minus English stopwords, each word mapped to a fixed dimension. A
document's value for a word is the BM25 term-frequency part with k1 = 1.2, b = 0.75 and Upstash's
constant average document length of 32; a query's value for a word is its IDF in the namespace, so
the inner product of the two is the document's BM25 score.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Mapping

import numpy as np

from core.vectors.records import SparseVector
from core.vectors.reported import shortest

K1 = 1.2
B = 0.75
AVERAGE_DOCUMENT_LENGTH = 32.0

_WORD = re.compile(r"[^\W_]+")
# A small English list; Upstash's BM25 also drops stopwords (it stems too, which this does not).
_STOPWORD_LIST = """
a about after all also an and any are as at be been but by can could did do does for from had has
have he her his how i if in into is it its me more my no not of on or our out over she should so
some such than that the their them then there these they this those to too up us was we were what
when where which who why will with would you your
"""
STOPWORDS = frozenset(_STOPWORD_LIST.split())

# Sparse arrays: dimension indices (int32, ascending) and their values (float32).
Sparse = tuple[np.ndarray, np.ndarray]


def tokenize(text: str) -> list[str]:
    """The words BM25 counts in `text`, in order."""
    return [word for word in _WORD.findall(text.lower()) if word not in STOPWORDS]


def term_index(word: str) -> int:
    """The sparse dimension of a word: stable across processes and machines, and a non-negative
    int32, the type Upstash takes for sparse indices."""
    return zlib.crc32(word.encode("utf-8")) & 0x7FFFFFFF


def document_weights(text: str) -> Sparse:
    """The BM25 document vector of `text` as arrays (words that share a dimension add up)."""
    words = tokenize(text)
    if not words:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    frequencies = Counter(term_index(word) for word in words)
    norm = K1 * (1 - B + B * len(words) / AVERAGE_DOCUMENT_LENGTH)
    indices = np.fromiter(sorted(frequencies), np.int32, len(frequencies))
    tf = np.array([frequencies[int(i)] for i in indices], np.float64)
    return indices, (tf * (K1 + 1) / (tf + norm)).astype(np.float32)


def idf(document_frequency: int, document_count: int) -> float:
    """ln(1 + (N - df + 0.5) / (df + 0.5)): positive, and largest for the rarest words."""
    return math.log(1 + (document_count - document_frequency + 0.5) / (document_frequency + 0.5))


def query_weights(text: str, frequencies: Mapping[int, int], document_count: int) -> Sparse:
    """The BM25 query vector of `text`: each distinct word weighted by its IDF among the documents."""
    terms = sorted({term_index(word) for word in tokenize(text)})
    values = [idf(frequencies.get(term, 0), document_count) for term in terms]
    return np.array(terms, np.int32), np.array(values, np.float32)


def bm25_document_vector(text: str) -> SparseVector:
    """The sparse vector the index stores for a text (what `upsert_data` computes)."""
    indices, values = document_weights(text)
    return SparseVector(indices=indices.tolist(), values=shortest(values).tolist())


def bm25_query_vector(text: str, frequencies: Mapping[int, int], document_count: int) -> SparseVector:
    """The sparse query vector for a text, given document frequencies by dimension."""
    indices, values = query_weights(text, frequencies, document_count)
    return SparseVector(indices=indices.tolist(), values=shortest(values).tolist())


class InvertedIndex:
    """Dimension -> (row, value) postings for one namespace, and inner-product scoring over them.

    Postings live in two parts. The base is compact numpy arrays sorted by dimension, rebuilt from
    every row now and then; rows written since sit in a dict, and rows whose base postings went out
    of date are flagged stale. That keeps writes O(terms) and memory near 8 bytes per posting, while
    a query reads only the postings of its own dimensions.
    """

    def __init__(self) -> None:
        self._terms = np.zeros(0, np.int32)  # the base's dimensions, ascending
        self._starts = np.zeros(1, np.int64)  # postings of _terms[i] are [_starts[i], _starts[i + 1])
        self._rows = np.zeros(0, np.int32)
        self._values = np.zeros(0, np.float32)
        self._stale = np.zeros(0, bool)  # per row of the base: its base postings no longer count
        self._recent: dict[int, dict[int, float]] = {}  # dimension -> {row: value}, rows since the base
        self._recent_rows: set[int] = set()
        self._recent_size = 0
        self.document_frequency: dict[int, int] = {}

    @property
    def recent_size(self) -> int:
        return self._recent_size

    @property
    def base_size(self) -> int:
        return len(self._rows)

    def add(self, row: int, sparse: Sparse) -> None:
        """Index `row` (which must hold no postings now) with the given dimensions and values."""
        self._recent_rows.add(row)
        for term, value in zip(sparse[0].tolist(), sparse[1].tolist(), strict=True):
            self._recent.setdefault(term, {})[row] = value
            self.document_frequency[term] = self.document_frequency.get(term, 0) + 1
        self._recent_size += len(sparse[0])

    def remove(self, row: int, sparse: Sparse) -> None:
        """Drop the postings of `row`, which was indexed with `sparse`."""
        terms = sparse[0].tolist()
        for term in terms:
            count = self.document_frequency[term] - 1
            if count:
                self.document_frequency[term] = count
            else:
                del self.document_frequency[term]
        if row in self._recent_rows:
            self._recent_rows.discard(row)
            for term in terms:
                postings = self._recent[term]
                del postings[row]
                if not postings:
                    del self._recent[term]
            self._recent_size -= len(terms)
        elif row < len(self._stale):
            self._stale[row] = True

    def scores(self, query: Sparse, row_count: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner products with the query for rows [0, row_count), and which rows share a dimension."""
        total = np.zeros(row_count, np.float64)
        touched = np.zeros(row_count, bool)
        terms, weights = query
        if len(self._terms) and len(terms):
            found = np.searchsorted(self._terms, terms)
            found[found >= len(self._terms)] = 0
            for position, term, weight in zip(found.tolist(), terms.tolist(), weights.tolist(), strict=True):
                if self._terms[position] != term:
                    continue
                start, end = self._starts[position], self._starts[position + 1]
                rows = self._rows[start:end]
                live = ~self._stale[rows]
                rows = rows[live]
                total[rows] += weight * self._values[start:end][live].astype(np.float64)
                touched[rows] = True
        for term, weight in zip(terms.tolist(), weights.tolist(), strict=True):
            for row, value in self._recent.get(term, {}).items():
                total[row] += weight * value
                touched[row] = True
        return total, touched

    def rebuild(self, rows: list[Sparse | None]) -> None:
        """Fold every row's current postings into a fresh base (None = a row without postings)."""
        lengths = np.array([0 if sparse is None else len(sparse[0]) for sparse in rows], np.int64)
        present = [sparse for sparse in rows if sparse is not None and len(sparse[0])]
        if present:
            terms = np.concatenate([sparse[0] for sparse in present])
            values = np.concatenate([sparse[1] for sparse in present])
        else:
            terms, values = np.zeros(0, np.int32), np.zeros(0, np.float32)
        owners = np.repeat(np.arange(len(rows), dtype=np.int32), lengths)
        order = np.argsort(terms, kind="stable")
        terms = terms[order]
        self._terms, first, counts = np.unique(terms, return_index=True, return_counts=True)
        self.document_frequency = dict(zip(self._terms.tolist(), counts.tolist(), strict=True))
        self._starts = np.append(first, len(terms)).astype(np.int64)
        self._rows = owners[order]
        self._values = values[order]
        self._stale = np.zeros(len(rows), bool)
        self._recent.clear()
        self._recent_rows.clear()
        self._recent_size = 0

    def nbytes(self) -> int:
        return int(self._rows.nbytes + self._values.nbytes + self._terms.nbytes) + 80 * self._recent_size
