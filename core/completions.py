"""As-you-type completions: titles and tags holding the words typed so far, the last word as a prefix.

An in-memory index of documents' titles and tags (their owner and visibility with them, so a caller
sees only what it may): titles and tags sorted by their normalised text (lower-case words joined by
one space), so "starts with what was typed" is a binary search, and each word's documents, for
titles and tags that hold the words elsewhere. Earlier words that are not known are corrected within
Meilisearch's typo rule (core/typos.py); a last word of 5 or more characters that starts no known
word is matched one typo away.
"""

from __future__ import annotations

import bisect
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from core.highlights import Match
from core.typos import ONE_TYPO_LENGTH, TypoIndex

_WORD = re.compile(r"[^\W_]+")
MAX_EXAMINED = 2_000  # candidates looked at per query: bounds a one-letter prefix's cost


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class _Entry:
    """One completion text (a title or a tag) and the documents that carry it."""

    text: str
    kind: str
    normalised: str
    documents: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (owner, visibility)


@dataclass(frozen=True)
class Completion:
    text: str
    kind: str  # "title" or "tag"
    marked: str
    matches: list[Match]  # in `text`
    video_count: int  # visible to the caller
    document: str | None  # the (first) visible document with this title; None for tags


class Completions:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}  # (kind, normalised) -> entry
        self._sorted: list[tuple[str, str]] = []  # (normalised, kind), ascending
        self._by_word: dict[str, set[tuple[str, str]]] = {}
        self._words: list[str] = []  # every word of every entry, ascending
        self._typos = TypoIndex()
        self._documents: dict[str, list[tuple[str, str]]] = {}  # key -> its entries

    def __len__(self) -> int:
        return len(self._documents)

    def put(self, key: str, owner: str, visibility: str, title: str, tags: list[str]) -> None:
        """Record a document as it is now; an empty visibility removes it."""
        for entry_key in self._documents.pop(key, []):
            entry = self._entries[entry_key]
            entry.documents.pop(key, None)
            if not entry.documents:
                self._drop(entry_key)
        if not visibility:
            return
        mine = []
        for kind, text in [("title", title)] + [("tag", tag) for tag in tags]:
            normalised = " ".join(words_of(text))
            if not normalised:
                continue
            entry_key = (kind, normalised)
            entry = self._entries.get(entry_key)
            if entry is None:
                entry = self._entries[entry_key] = _Entry(text, kind, normalised)
                bisect.insort(self._sorted, (normalised, kind))
                for word in set(normalised.split()):
                    holders = self._by_word.setdefault(word, set())
                    if not holders:
                        bisect.insort(self._words, word)
                    holders.add(entry_key)
                    self._typos.set_count(word, len(holders))
            entry.documents[key] = (owner, visibility)
            mine.append(entry_key)
        self._documents[key] = mine

    def _drop(self, entry_key: tuple[str, str]) -> None:
        entry = self._entries.pop(entry_key)
        del self._sorted[bisect.bisect_left(self._sorted, (entry.normalised, entry.kind))]
        for word in set(entry.normalised.split()):
            holders = self._by_word[word]
            holders.discard(entry_key)
            self._typos.set_count(word, len(holders))
            if not holders:
                del self._by_word[word]
                del self._words[bisect.bisect_left(self._words, word)]

    def _prefixed(self, prefix: str) -> Iterator[str]:
        at = bisect.bisect_left(self._words, prefix)
        while at < len(self._words) and self._words[at].startswith(prefix):
            yield self._words[at]
            at += 1

    def _prefixes(self, last: str) -> list[str]:
        """The prefixes the last word stands for: itself, or, when it starts no word and is long
        enough for a typo, every prefix one typo away that starts one."""
        if next(self._prefixed(last), None) is not None or len(last) < ONE_TYPO_LENGTH:
            return [last]
        alphabet = set("abcdefghijklmnopqrstuvwxyz") | set(last)
        variants = {last[:i] + last[i + 1 :] for i in range(len(last))}
        variants |= {last[:i] + last[i + 1] + last[i] + last[i + 2 :] for i in range(len(last) - 1)}
        variants |= {last[:i] + c + last[i + 1 :] for i in range(len(last)) for c in alphabet}
        variants |= {last[:i] + c + last[i:] for i in range(len(last) + 1) for c in alphabet}
        return sorted(v for v in variants if next(self._prefixed(v), None) is not None)

    def complete(self, query: str, viewer: str | None, limit: int, pre: str, post: str) -> list[Completion]:
        """Completions of `query` the viewer may see (public, or its own), best first: those that start
        with the typed words before those that hold them elsewhere; then tags before titles, the most
        visible videos, the shortest text."""
        typed = words_of(query)
        if not typed:
            return []
        earlier = [
            word if word in self._by_word else (self._typos.closest(word) or word) for word in typed[:-1]
        ]
        prefixes = self._prefixes(typed[-1])
        found: dict[tuple[str, str], tuple[int, int]] = {}  # entry key -> (tier, visible videos)
        for prefix in prefixes:
            start = " ".join([*earlier, prefix])
            at = bisect.bisect_left(self._sorted, (start, ""))
            examined = 0
            while (
                at < len(self._sorted) and self._sorted[at][0].startswith(start) and examined < MAX_EXAMINED
            ):
                normalised, kind = self._sorted[at]
                self._consider(found, (kind, normalised), 0, viewer)
                at += 1
                examined += 1
        if len(found) < limit:
            for entry_key in self._holding(earlier, prefixes):
                if entry_key not in found:
                    self._consider(found, entry_key, 1, viewer)
        ranked = sorted(
            found.items(),
            key=lambda item: (item[1][0], item[0][0] != "tag", -item[1][1], len(item[0][1]), item[0][1]),
        )
        return [
            self._completion(entry_key, earlier, prefixes, viewer, pre, post)
            for entry_key, _ in ranked[:limit]
        ]

    def _holding(self, earlier: list[str], prefixes: list[str]) -> Iterator[tuple[str, str]]:
        """Entries holding every earlier word and a word starting with one of the prefixes."""
        required = [self._by_word.get(word, set()) for word in earlier]
        if any(not holders for holders in required):
            return
        examined = 0
        for prefix in prefixes:
            for word in self._prefixed(prefix):
                for entry_key in self._by_word[word]:
                    if all(entry_key in holders for holders in required):
                        yield entry_key
                    examined += 1
                    if examined >= MAX_EXAMINED:
                        return

    def _consider(self, found: dict, entry_key: tuple[str, str], tier: int, viewer: str | None) -> None:
        visible = sum(
            1
            for owner, visibility in self._entries[entry_key].documents.values()
            if _sees(owner, visibility, viewer)
        )
        if visible:
            found[entry_key] = (tier, visible)

    def _completion(
        self,
        entry_key: tuple[str, str],
        earlier: list[str],
        prefixes: list[str],
        viewer: str | None,
        pre: str,
        post: str,
    ) -> Completion:
        entry = self._entries[entry_key]
        spans = []
        for match in _WORD.finditer(entry.text):
            word = match.group().lower()
            if word in earlier:
                spans.append((match.start(), match.end() - match.start()))
            elif (prefix := next((p for p in prefixes if word.startswith(p)), None)) is not None:
                spans.append((match.start(), len(prefix)))
        pieces, position = [], 0
        for start, length in spans:
            pieces += [
                html.escape(entry.text[position:start]),
                pre,
                html.escape(entry.text[start : start + length]),
                post,
            ]
            position = start + length
        pieces.append(html.escape(entry.text[position:]))
        visible = [
            key for key, (owner, visibility) in entry.documents.items() if _sees(owner, visibility, viewer)
        ]
        return Completion(
            text=entry.text,
            kind=entry.kind,
            marked="".join(pieces),
            matches=[Match(start, length) for start, length in spans],
            video_count=len(visible),
            document=min(visible) if entry.kind == "title" else None,
        )


def _sees(owner: str, visibility: str, viewer: str | None) -> bool:
    # Completions list what search lists: public videos, and the caller's own of any visibility.
    return visibility == "public" or (viewer is not None and owner == viewer)
