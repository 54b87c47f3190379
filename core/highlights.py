"""Highlighted snippets: the part of a text around its best match of a query's words, with the words marked.

Words are matched as BM25 counts them (core/vectors/sparse.py: runs of letters and digits, compared
lower-cased), so what is marked is what the keyword score saw. A snippet is plain text cut at word
boundaries; `marked` is the same text HTML-escaped with only the caller's markers added, and `matches`
are [start, start + length) offsets into the plain snippet, counted in Unicode code points (Python
string indices; a JavaScript client counts UTF-16 units, which differ only past U+FFFF).
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection
from typing import Annotated

import msgspec
from litestar.params import QueryParameter

from core.text import SINGLE_LINE
from core.vectors.sparse import tokenize

_WORD_CHAR = re.compile(r"[^\W_]")
_SPACE = re.compile(r"\s+")


class Match(msgspec.Struct):
    start: int
    length: int


class Highlight(msgspec.Struct):
    snippet: str
    marked: str
    matches: list[Match]


class TermPattern:
    """A compiled whole-word pattern that remembers its terms."""

    def __init__(self, source: str, terms: list[str]) -> None:
        self.regex = re.compile(source, re.IGNORECASE)
        self.terms = terms


def query_terms(text: str) -> frozenset[str]:
    """The words of a query that can match a document word (BM25's tokens)."""
    return frozenset(tokenize(text))


def term_pattern(terms: Collection[str]) -> TermPattern | None:
    """One regex finding any of the terms as a whole word (None when there are no terms).

    Longest first, so a term that prefixes another never hides it; case-insensitive matching on the
    original text keeps offsets exact where lower-casing would change a string's length.
    """
    if not terms:
        return None
    ordered = sorted(terms, key=len, reverse=True)
    alternatives = "|".join(re.escape(term) for term in ordered)
    return TermPattern(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])", ordered)


def _best_window(spans: list[tuple[int, int, str]], length: int) -> tuple[int, int]:
    """The first and last index of the run of matches fitting in `length` characters with the most
    distinct terms, then the most matches; the earliest such run wins ties."""
    best, best_score, last = (0, 0), (0, 0), 0
    for first in range(len(spans)):
        last = max(last, first)
        while last + 1 < len(spans) and spans[last + 1][1] - spans[first][0] <= length:
            last += 1
        score = (len({span[2] for span in spans[first : last + 1]}), last - first + 1)
        if score > best_score:
            best, best_score = (first, last), score
    return best


def _cut(text: str, start: int, end: int) -> tuple[int, int]:
    """Move [start, end) inwards to word boundaries, so no word is shown in part."""
    if start > 0 and _WORD_CHAR.match(text, start - 1) and _WORD_CHAR.match(text, start):
        space = _SPACE.search(text, start, end)
        start = space.end() if space else start
    if end < len(text) and _WORD_CHAR.match(text, end - 1) and _WORD_CHAR.match(text, end):
        cut = max((m.start() for m in _SPACE.finditer(text, start, end)), default=end)
        end = cut
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _spans(text: str, pattern: TermPattern | None) -> list[tuple[int, int, str]]:
    """Every whole-word match in `text`, in order: (start, end, term)."""
    if pattern is None:
        return []
    lowered = text.lower()
    if len(lowered) != len(text):  # lower-casing moved offsets (e.g. "İ"): let the regex do it all
        return [(m.start(), m.end(), m.group().lower()) for m in pattern.regex.finditer(text)]
    # str.find runs in C over the whole text, several times faster than the regex on a long
    # transcript; only the places it finds are checked for word boundaries.
    spans = []
    for term in pattern.terms:
        at = lowered.find(term)
        while at >= 0:
            end = at + len(term)
            if not (at and _WORD_CHAR.match(text, at - 1)) and not _WORD_CHAR.match(text, end):
                spans.append((at, end, term))
            at = lowered.find(term, end)
    return sorted(spans)


def highlight(
    text: str, pattern: TermPattern | None, length: int, pre: str = "<mark>", post: str = "</mark>"
) -> Highlight:
    """A snippet of at most `length` characters around the best match (a longer word than `length`
    is kept whole), or the text's start when nothing matches."""
    return _highlight(text, _spans(text, pattern), length, pre, post)


def _highlight(text: str, spans: list[tuple[int, int, str]], length: int, pre: str, post: str) -> Highlight:
    if spans:
        first, last = _best_window(spans, length)
        matched_from, matched_to = spans[first][0], spans[last][1]
        # Centre the matched run: half the spare room before it, the rest after.
        spare = max(0, length - (matched_to - matched_from))
        start = max(0, matched_from - spare // 2)
        end = min(len(text), start + length)
        start = max(0, min(start, end - length))
        start, end = _cut(text, start, end)
        start, end = min(start, matched_from), max(end, matched_to)
    else:
        start, end = _cut(text, 0, min(len(text), length))
    snippet = text[start:end]
    inside = [(s - start, e - start) for s, e, _ in spans if s >= start and e <= end]
    pieces, position = [], 0
    for s, e in inside:
        pieces += [html.escape(snippet[position:s]), pre, html.escape(snippet[s:e]), post]
        position = e
    pieces.append(html.escape(snippet[position:]))
    return Highlight(snippet=snippet, marked="".join(pieces), matches=[Match(s, e - s) for s, e in inside])


def excerpt(text: str, pattern: TermPattern | None, length: int, pre: str, post: str) -> Highlight | None:
    """A highlight only where the text has a match (for long texts shown only when they matched)."""
    spans = _spans(text, pattern)
    return _highlight(text, spans, length, pre, post) if spans else None


DEFAULT_LENGTH, MIN_LENGTH, MAX_LENGTH = 160, 20, 1_000  # snippet characters
MAX_MARKER_LENGTH = 50

# The query parameters that ask for a highlighting, bounds from the constants above.
HighlightLength = Annotated[
    int,
    QueryParameter(
        ge=MIN_LENGTH,
        le=MAX_LENGTH,
        description=f"Snippet length in characters, {MIN_LENGTH}-{MAX_LENGTH}, cut at word boundaries.",
    ),
]
HighlightPre = Annotated[
    str,
    QueryParameter(
        max_length=MAX_MARKER_LENGTH,
        pattern=SINGLE_LINE,
        description=f"Put before each match in `marked` (at most {MAX_MARKER_LENGTH} characters).",
    ),
]
HighlightPost = Annotated[
    str,
    QueryParameter(
        max_length=MAX_MARKER_LENGTH,
        pattern=SINGLE_LINE,
        description=f"Put after each match in `marked` (at most {MAX_MARKER_LENGTH} characters).",
    ),
]


class Highlighting(msgspec.Struct, frozen=True):
    """How a client wants matches shown: snippet length and markers (inserted as given)."""

    length: int = DEFAULT_LENGTH
    pre: str = "<mark>"
    post: str = "</mark>"


DEFAULT_HIGHLIGHTING = Highlighting()


class Highlighter:
    """One query's highlighting: its terms, the snippet length and the markers the client asked for."""

    def __init__(self, terms: Collection[str], highlighting: Highlighting) -> None:
        self.terms = frozenset(terms)
        self._pattern = term_pattern(self.terms)
        self._length, self._pre, self._post = highlighting.length, highlighting.pre, highlighting.post

    def whole(self, text: str) -> Highlight:
        """A snippet of `text` whether it matched or not (a plain leading one when not)."""
        return highlight(text, self._pattern, self._length, self._pre, self._post)

    def where_matched(self, text: str) -> Highlight | None:
        """A snippet of `text` only when it holds a term."""
        return excerpt(text, self._pattern, self._length, self._pre, self._post)
