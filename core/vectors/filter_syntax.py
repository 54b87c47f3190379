"""The lexical layer of the metadata filter language: tokens, quoted strings and field paths.

Field paths follow Upstash's identifier rule, `[a-zA-Z_][a-zA-Z_0-9.[]#-]*`, and break into steps:
keys (`a.b`), indexes from the start (`a[0]`) and from the end (`a[#-1]`). Errors carry the
0-based character position where the text stopped making sense.
"""

from __future__ import annotations

import re
from typing import Any

from core.vectors.records import VectorIndexError


class FilterError(VectorIndexError):
    """A filter that does not parse; `position` is the 0-based character offset of the problem."""

    def __init__(self, text: str, position: int, problem: str) -> None:
        super().__init__(f"invalid filter at position {position}: {problem} (in {text!r})")
        self.position = position


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<punct>[(),])
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z_0-9.\[\]\#\-]*)
  | (?P<quote>['"])
    """,
    re.VERBOSE,
)
_KEYWORDS = frozenset({"AND", "OR", "NOT", "GLOB", "IN", "CONTAINS", "HAS", "FIELD", "TRUE", "FALSE"})


class Token:
    __slots__ = ("kind", "position", "text", "value")

    def __init__(self, kind: str, text: str, position: int, value: Any = None) -> None:
        self.kind = kind  # op, punct, number, string, ident, end
        self.text = text
        self.position = position
        self.value = value

    def keyword(self) -> str | None:
        upper = self.text.upper()
        return upper if self.kind == "ident" and upper in _KEYWORDS else None

    def describe(self) -> str:
        return "the end of the filter" if self.kind == "end" else repr(self.text)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise FilterError(text, position, f"unexpected character {text[position]!r}")
        kind = match.lastgroup or ""
        if kind == "quote":
            value, end = _read_string(text, position)
            tokens.append(Token("string", text[position:end], position, value))
            position = end
            continue
        if kind == "number":
            raw = match.group()
            number: float | int = float(raw) if any(c in raw for c in ".eE") else int(raw)
            tokens.append(Token("number", raw, position, number))
        elif kind != "space":
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text):
            out.append(text[position + 1])
            position += 2
            continue
        if char == quote:
            return "".join(out), position + 1
        out.append(char)
        position += 1
    raise FilterError(text, start, f"the string starting here has no closing {quote}")


_PATH_STEP = re.compile(r"\.([A-Za-z_0-9\-]+)|\[(\d+)\]|\[#-(\d+)\]")
_PATH_HEAD = re.compile(r"[A-Za-z_][A-Za-z_0-9\-]*")

# A path step: a key (str), an index from the start (int >= 0), or from the end (("#", n) = len - n).
Step = str | int | tuple[str, int]


def parse_path(text: str, token: Token) -> tuple[Step, ...]:
    raw = token.text
    head = _PATH_HEAD.match(raw)
    assert head is not None  # the identifier pattern guarantees a head
    steps: list[Step] = [head.group()]
    position = head.end()
    while position < len(raw):
        match = _PATH_STEP.match(raw, position)
        if match is None:
            raise FilterError(
                text, token.position + position, "expected .key, [n] or [#-n] in the field name"
            )
        key, index, from_end = match.groups()
        if key is not None:
            steps.append(key)
        elif index is not None:
            steps.append(int(index))
        else:
            if int(from_end) == 0:
                raise FilterError(text, token.position + position, "[#-0] is past the end; use [#-1]")
            steps.append(("#", int(from_end)))
        position = match.end()
    return tuple(steps)
