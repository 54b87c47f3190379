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
import gc
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from core.highlights import Match
from core.typos import ONE_TYPO_LENGTH, TypoIndex

_WORD = re.compile(r"[^\W_]+")
# Candidates looked at per query and kind: bounds a one-letter prefix's cost (at 100k videos, titles
# starting with "t" run to thousands; tags stay few).
MAX_EXAMINED = {"tag": 2_000, "title": 300}


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class _Entry:
    """One completion text (a title or a tag) and the documents that carry it."""

    text: str
    kind: str
    normalised: str
    documents: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (owner, visibility)
    public: int = 0  # how many of the documents are public
    others: dict[str, int] = field(default_factory=dict)  # owner -> how many of theirs are not

    def add(self, key: str, owner: str, visibility: str) -> None:
        self.documents[key] = (owner, visibility)
        if visibility == "public":
            self.public += 1
        else:
            self.others[owner] = self.others.get(owner, 0) + 1

    def remove(self, key: str) -> None:
        owner, visibility = self.documents.pop(key)
        if visibility == "public":
            self.public -= 1
        elif self.others[owner] > 1:
            self.others[owner] -= 1
        else:
            del self.others[owner]

    def visible_to(self, viewer: str | None) -> int:
        return self.public + (self.others.get(viewer, 0) if viewer is not None else 0)


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
        # Normalised texts by kind, ascending: tags and titles apart, so the few tags are all looked at.
        self._sorted: dict[str, list[str]] = {"tag": [], "title": []}
        self._by_word: dict[str, set[tuple[str, str]]] = {}
        self._words: list[str] = []  # every word of every entry, ascending
        self._typos = TypoIndex()
        self._documents: dict[str, list[tuple[str, str]]] = {}  # key -> its entries
        self._loading = False  # while `load` runs, the sorted lists are sorted once at its end

    @classmethod
    def load(cls, documents: list[tuple[str, str, str, str, list[str]]]) -> Completions:
        """A fresh index of these (key, owner, visibility, title, tags): one sort, not one insort each
        (100k titles: seconds otherwise)."""
        completions = cls()
        completions._loading = True
        latest = {document[0]: document for document in documents}
        # Millions of small containers: the cycle collector would scan them over and over while they
        # are made (60% of the time); nothing made here is garbage.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for document in latest.values():
                completions.put(*document)
        finally:
            if collecting:
                gc.enable()
        for ordered in completions._sorted.values():
            ordered.sort()
        completions._words.sort()
        completions._typos = TypoIndex((word, len(holders)) for word, holders in completions._by_word.items())
        completions._loading = False
        return completions

    def __len__(self) -> int:
        return len(self._documents)

    def put(self, key: str, owner: str, visibility: str, title: str, tags: list[str]) -> None:
        """Record a document as it is now; an empty visibility removes it."""
        for entry_key in self._documents.pop(key, []):
            entry = self._entries[entry_key]
            entry.remove(key)
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
                self._insert(self._sorted[kind], normalised)
                for word in set(normalised.split()):
                    holders = self._by_word.setdefault(word, set())
                    if not holders:
                        self._insert(self._words, word)
                    holders.add(entry_key)
                    if not self._loading:
                        self._typos.set_count(word, len(holders))
            if key not in entry.documents:  # not a tag given twice
                entry.add(key, owner, visibility)
                mine.append(entry_key)
        self._documents[key] = mine

    def _insert(self, ordered: list, item: object) -> None:
        if self._loading:
            ordered.append(item)
        else:
            bisect.insort(ordered, item)

    def _drop(self, entry_key: tuple[str, str]) -> None:
        entry = self._entries.pop(entry_key)
        ordered = self._sorted[entry.kind]
        del ordered[bisect.bisect_left(ordered, entry.normalised)]
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
            for kind, ordered in self._sorted.items():
                at = bisect.bisect_left(ordered, start)
                end = min(len(ordered), at + MAX_EXAMINED[kind])
                while at < end and ordered[at].startswith(start):
                    self._consider(found, (kind, ordered[at]), 0, viewer)
                    at += 1
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
        required = sorted((self._by_word.get(word, set()) for word in earlier), key=len)
        if any(not holders for holders in required):
            return
        examined = 0
        if required:  # from the fewest entries holding an earlier word
            for entry_key in required[0]:
                words = entry_key[1].split()
                if all(entry_key in holders for holders in required[1:]) and any(
                    word.startswith(prefix) for word in words for prefix in prefixes
                ):
                    yield entry_key
                examined += 1
                if examined >= MAX_EXAMINED["title"] * 10:
                    return
            return
        for prefix in prefixes:
            for word in self._prefixed(prefix):
                for entry_key in self._by_word[word]:
                    if all(entry_key in holders for holders in required):
                        yield entry_key
                    examined += 1
                    if examined >= MAX_EXAMINED["title"]:
                        return

    def _consider(self, found: dict, entry_key: tuple[str, str], tier: int, viewer: str | None) -> None:
        if visible := self._entries[entry_key].visible_to(viewer):
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
        document = None
        if entry.kind == "title":
            document = next(
                k for k, (owner, visibility) in entry.documents.items() if _sees(owner, visibility, viewer)
            )
        return Completion(
            text=entry.text,
            kind=entry.kind,
            marked="".join(pieces),
            matches=[Match(start, length) for start, length in spans],
            video_count=entry.visible_to(viewer),
            document=document,
        )


def _sees(owner: str, visibility: str, viewer: str | None) -> bool:
    # Completions list what search lists: public videos, and the caller's own of any visibility.
    return visibility == "public" or (viewer is not None and owner == viewer)
