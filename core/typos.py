"""Typo tolerance: the closest known words to a misspelt one, found through a symmetric-delete index.

Meilisearch's rule for how many typos a word may hold: none under 5 characters, 1 from 5 to 8, 2 from
9. A typo is one insertion, deletion, substitution or swap of neighbours (optimal string alignment
distance). Lookups follow SymSpell: every known word is filed under the strings its first
`PREFIX_LENGTH` characters become with up to 2 characters deleted, and a query word's own deletes
find every candidate in a few dict lookups (~20 µs), whatever the vocabulary's size; candidates are
then checked with the real distance. Words with digits are codes and numbers ("E0502", "1202"): never
corrected, and not filed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from rapidfuzz.distance import OSA

from core.vectors.sparse import STOPWORDS

ONE_TYPO_LENGTH = 5
TWO_TYPOS_LENGTH = 9
PREFIX_LENGTH = 7  # SymSpell's default: deletes of the first 7 characters keep the index small
_LETTERS = re.compile(r"[^\W\d_]+")


RULE = (
    "Words not in the catalogue's vocabulary are matched to the closest known ones: 1 typo in words of 5-8"
    " letters, 2 from 9, none below 5; words with digits never."
)


def allowed_typos(word: str) -> int:
    if len(word) >= TWO_TYPOS_LENGTH:
        return 2
    return 1 if len(word) >= ONE_TYPO_LENGTH else 0


def correctable(word: str) -> bool:
    """Whether a word takes part in typo tolerance: letters only, and not a stopword."""
    return bool(_LETTERS.fullmatch(word)) and word not in STOPWORDS


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (a swap of neighbours is one edit); limit + 1 past `limit`."""
    return OSA.distance(a, b, score_cutoff=limit)


def _deletes(word: str, depth: int) -> set[str]:
    found = {word}
    frontier = {word}
    for _ in range(depth):
        frontier = {part[:i] + part[i + 1 :] for part in frontier for i in range(len(part))}
        found |= frontier
    return found


class TypoIndex:
    """Known words with how many documents hold each, and their closest matches for a misspelt word."""

    def __init__(self, counts: Iterable[tuple[str, int]] = ()) -> None:
        self._counts: dict[str, int] = {}
        self._filed: dict[str, list[str]] = {}  # a delete of a word's prefix -> the words filed there
        for word, count in counts:
            self.set_count(word, count)

    def __len__(self) -> int:
        return len(self._counts)

    def __contains__(self, word: str) -> bool:
        return word in self._counts

    def set_count(self, word: str, count: int) -> None:
        """How many documents hold `word` now (0 removes it)."""
        known = word in self._counts
        if count > 0:
            self._counts[word] = count
            if not known and correctable(word) and len(word) >= ONE_TYPO_LENGTH - 1:
                for key in self._keys_of_known(word):
                    self._filed.setdefault(key, []).append(word)
        elif known:
            del self._counts[word]
            if correctable(word) and len(word) >= ONE_TYPO_LENGTH - 1:
                for key in self._keys_of_known(word):
                    words = self._filed[key]
                    words.remove(word)
                    if not words:
                        del self._filed[key]

    @staticmethod
    def _keys_of_known(word: str) -> set[str]:
        # A known word within 2 typos of a query word has at least 7 characters (the query has 9+),
        # so shorter ones are only ever one typo away.
        return _deletes(word[:PREFIX_LENGTH], 2 if len(word) >= TWO_TYPOS_LENGTH - 2 else 1)

    def closest(self, word: str) -> str | None:
        """The known word closest to `word` within its allowed typos, the one in most documents among
        equals (then the first alphabetically); None when `word` is known, not correctable, or has no
        match."""
        limit = allowed_typos(word)
        if not limit or word in self._counts or not correctable(word):
            return None
        best: tuple[int, int, str] | None = None
        for candidate in self._candidates(word, limit):
            distance = edit_distance(word, candidate, limit)
            if distance <= limit:
                rank = (distance, -self._counts[candidate], candidate)
                if best is None or rank < best:
                    best = rank
        return best[2] if best else None

    def _candidates(self, word: str, limit: int) -> Iterator[str]:
        seen: set[str] = set()
        for key in _deletes(word[:PREFIX_LENGTH], limit):
            for candidate in self._filed.get(key, ()):
                if candidate not in seen:
                    seen.add(candidate)
                    yield candidate

    def count(self, word: str) -> int:
        return self._counts.get(word, 0)


_WORD = re.compile(r"[^\W_]+")


def corrections(text: str, index: TypoIndex) -> dict[str, str]:
    """Each misspelt word of `text` (lower-cased) and the known word it stands for."""
    found = {}
    for word in _WORD.findall(text.lower()):
        if word not in found and (closest := index.closest(word)) is not None:
            found[word] = closest
    return found


def corrected(text: str, replacements: dict[str, str]) -> str:
    """`text` with its misspelt words replaced (by their lower-case corrections), the rest as typed."""
    return _WORD.sub(lambda match: replacements.get(match.group().lower(), match.group()), text)
