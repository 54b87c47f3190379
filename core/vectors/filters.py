"""Upstash Vector's metadata filter language, compiled once into a predicate over a record's metadata.

    country = 'Turkey' AND (population > 10000000 OR is_capital = false)
    tags CONTAINS 'news' AND geo.city GLOB 'Ist*' AND scores[#-1] >= 3 AND HAS FIELD owner

Operators: = != < <= > >= on strings, numbers and booleans; [NOT] GLOB (Unix glob, case sensitive);
[NOT] IN (...); [NOT] CONTAINS (an element of an array field); HAS [NOT] FIELD. AND binds tighter than
OR; parentheses group; keywords are case-insensitive. Fields are paths: `a.b.c`, `a[0]`, `a[#-1]`.

A comparison is true only when the field exists and holds a value of the literal's type (numbers
compare with numbers, and so on), so a missing field or a type mismatch never matches, negated
operators included; only HAS NOT FIELD matches on absence. A malformed filter raises `FilterError`,
which says at what character position it went wrong and what was expected there.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable
from typing import Any

from core.vectors.filter_syntax import FilterError, Step, Token, parse_path, tokenize
from core.vectors.records import VectorIndexError

Predicate = Callable[[dict[str, Any] | None], bool]
Scalar = str | int | float | bool

_MISSING: Any = object()


def _resolve(metadata: dict[str, Any] | None, path: tuple[Step, ...]) -> Any:
    current: Any = metadata
    for step in path:
        if isinstance(step, str):
            if not isinstance(current, dict):
                return _MISSING
            current = current.get(step, _MISSING)
            if current is _MISSING:
                return _MISSING
        else:
            if not isinstance(current, list):
                return _MISSING
            index = step if isinstance(step, int) else len(current) - step[1]
            if not 0 <= index < len(current):
                return _MISSING
            current = current[index]
    return current


# ---------------------------------------------------------------- value semantics


def _comparable(value: Any, literal: Scalar) -> bool:
    """Whether = and != may judge `value` against `literal` at all (else neither matches)."""
    if isinstance(literal, bool):
        return isinstance(value, bool)
    if isinstance(literal, str):
        return isinstance(value, str)
    if isinstance(value, bool):
        return literal in (0, 1)  # Upstash documents booleans as 1 and 0 in filters
    return isinstance(value, int | float)


def _equal(value: Any, literal: Scalar) -> bool:
    if not _comparable(value, literal):
        return False
    if isinstance(value, bool) or isinstance(literal, bool):
        return bool(value) is bool(literal)
    return value == literal


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = i + 1
            if end < len(pattern) and pattern[end] in "^!":
                end += 1
            if end < len(pattern) and pattern[end] == "]":
                end += 1  # a ] right after [ or [^ is a member, as in Unix globs
            while end < len(pattern) and pattern[end] != "]":
                end += 1
            if end >= len(pattern):
                out.append(re.escape(char))  # an unclosed [ is an ordinary character
            else:
                body = pattern[i + 1 : end]
                negate = body[:1] in ("^", "!")
                members = "".join("\\" + c if c in "\\[]^" else c for c in (body[1:] if negate else body))
                out.append(f"[{'^' if negate else ''}{members}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _getter(path: tuple[Step, ...]) -> Callable[[dict[str, Any] | None], Any]:
    if len(path) == 1 and isinstance(path[0], str):
        key = path[0]  # the common case, kept to one dict lookup: masks evaluate every row
        return lambda metadata: _MISSING if metadata is None else metadata.get(key, _MISSING)
    return lambda metadata: _resolve(metadata, path)


_SCALARS = (str, int, float, bool)
_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _comparison(path: tuple[Step, ...], op: str, literal: Scalar) -> Predicate:
    """A closure per (operator, literal type): the type rules of _comparable, without its calls."""
    get = _getter(path)
    if isinstance(literal, bool):
        if op == "=":
            return lambda metadata: get(metadata) is literal
        if op == "!=":
            return lambda metadata: get(metadata) is (not literal)
        return lambda metadata: False  # booleans have no order
    if isinstance(literal, str):
        compare = operator.eq if op == "=" else operator.ne if op == "!=" else _ORDER[op]

        def on_string(metadata: dict[str, Any] | None) -> bool:
            value = get(metadata)
            return value.__class__ is str and compare(value, literal)

        return on_string
    if op in ("=", "!="):
        # Numbers compare with numbers, and with booleans when the literal is 1 or 0.
        kinds = (int, float, bool) if literal in (0, 1) else (int, float)
        compare = operator.eq if op == "=" else operator.ne

        def on_number(metadata: dict[str, Any] | None) -> bool:
            value = get(metadata)
            return value.__class__ in kinds and compare(value, literal)

        return on_number
    order = _ORDER[op]

    def ordered(metadata: dict[str, Any] | None) -> bool:
        value = get(metadata)
        return (value.__class__ is int or value.__class__ is float) and order(value, literal)

    return ordered


def _all(parts: list[Predicate]) -> Predicate:
    # Chained closures: much faster per row than all() over a generator; bounded to keep the depth low.
    if len(parts) > 32:
        return lambda metadata: all(part(metadata) for part in parts)
    first, rest = parts[0], parts[1] if len(parts) == 2 else _all(parts[1:])
    return lambda metadata: first(metadata) and rest(metadata)


def _any(parts: list[Predicate]) -> Predicate:
    if len(parts) > 32:
        return lambda metadata: any(part(metadata) for part in parts)
    first, rest = parts[0], parts[1] if len(parts) == 2 else _any(parts[1:])
    return lambda metadata: first(metadata) or rest(metadata)


# ---------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.at = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.at]

    def fail(self, expected: str, token: Token | None = None) -> FilterError:
        token = token or self.token
        return FilterError(self.text, token.position, f"expected {expected}, found {token.describe()}")

    def take_keyword(self, *words: str) -> str | None:
        word = self.token.keyword()
        if word in words:
            self.at += 1
            return word
        return None

    def expect_punct(self, char: str, expected: str) -> None:
        if self.token.kind != "punct" or self.token.text != char:
            raise self.fail(expected)
        self.at += 1

    def parse(self) -> Predicate:
        if self.token.kind == "end":
            raise self.fail("a condition")
        predicate = self.parse_or()
        if self.token.kind != "end":
            raise self.fail("AND, OR or the end of the filter")
        return predicate

    def parse_or(self) -> Predicate:
        parts = [self.parse_and()]
        while self.take_keyword("OR"):
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else _any(parts)

    def parse_and(self) -> Predicate:
        parts = [self.parse_condition()]
        while self.take_keyword("AND"):
            parts.append(self.parse_condition())
        return parts[0] if len(parts) == 1 else _all(parts)

    def parse_condition(self) -> Predicate:
        token = self.token
        if token.kind == "punct" and token.text == "(":
            self.at += 1
            inner = self.parse_or()
            self.expect_punct(")", "a closing parenthesis")
            return inner
        if token.keyword() == "HAS" and self.tokens[self.at + 1].keyword() in ("FIELD", "NOT"):
            self.at += 1
            negate = self.take_keyword("NOT") is not None
            if not self.take_keyword("FIELD"):
                raise self.fail("FIELD")
            get = _getter(self.parse_field())
            if negate:
                return lambda metadata: get(metadata) is _MISSING
            return lambda metadata: get(metadata) is not _MISSING
        path = self.parse_field()
        return self.parse_operator(path)

    def parse_field(self) -> tuple[Step, ...]:
        token = self.token
        if token.kind != "ident" or token.keyword() in ("AND", "OR"):
            raise self.fail("a field name")
        self.at += 1
        return parse_path(self.text, token)

    def parse_operator(self, path: tuple[Step, ...]) -> Predicate:
        token = self.token
        if token.kind == "op":
            self.at += 1
            return _comparison(path, token.text, self.parse_literal())
        get = _getter(path)
        negate = self.take_keyword("NOT") is not None
        keyword = self.take_keyword("GLOB", "IN", "CONTAINS")
        if keyword is None:
            expected = (
                "GLOB, IN or CONTAINS after NOT" if negate else "an operator (= != < <= > >= GLOB IN ...)"
            )
            raise self.fail(expected)
        if keyword == "GLOB":
            pattern_token = self.token
            if pattern_token.kind != "string":
                raise self.fail("a quoted glob pattern")
            self.at += 1
            try:
                regex = _glob_regex(pattern_token.value)
            except re.error as exc:
                raise FilterError(self.text, pattern_token.position, f"bad glob pattern: {exc}") from None

            def glob(metadata: dict[str, Any] | None) -> bool:
                value = get(metadata)
                return isinstance(value, str) and (regex.fullmatch(value) is None) == negate

            return glob
        if keyword == "IN":
            options = self.parse_literal_list()
            if not negate and not any(isinstance(option, bool) for option in options):
                # Without boolean options, Python's `in` on scalars compares exactly as _equal does.

                def within_fast(metadata: dict[str, Any] | None) -> bool:
                    value = get(metadata)
                    return value.__class__ in _SCALARS and value in options

                return within_fast

            def within(metadata: dict[str, Any] | None) -> bool:
                value = get(metadata)
                if not any(_comparable(value, option) for option in options):
                    return False
                return any(_equal(value, option) for option in options) != negate

            return within
        element = self.parse_literal()
        if not isinstance(element, bool):
            # For a string or number, list membership compares exactly as _equal does.

            def contains_fast(metadata: dict[str, Any] | None) -> bool:
                value = get(metadata)
                return value.__class__ is list and (element in value) != negate

            return contains_fast

        def contains(metadata: dict[str, Any] | None) -> bool:
            value = get(metadata)
            if not isinstance(value, list):
                return False
            return any(_equal(item, element) for item in value) != negate

        return contains

    def parse_literal(self) -> Scalar:
        token = self.token
        if token.kind in ("string", "number"):
            self.at += 1
            return token.value
        word = token.keyword()
        if word in ("TRUE", "FALSE"):
            self.at += 1
            return word == "TRUE"
        raise self.fail("a value (a quoted string, a number, true or false)")

    def parse_literal_list(self) -> tuple[Scalar, ...]:
        self.expect_punct("(", "( to open the list of values")
        values = [self.parse_literal()]
        while self.token.kind == "punct" and self.token.text == ",":
            self.at += 1
            values.append(self.parse_literal())
        self.expect_punct(")", ", or ) to close the list of values")
        return tuple(values)


def compile_filter(text: str) -> Predicate:
    """The predicate for a filter expression; cached, since searches repeat the same few filters."""
    if not isinstance(text, str):
        raise VectorIndexError(f"a filter must be a string, not {type(text).__name__}")
    return _compile(text)


@functools.lru_cache(maxsize=512)
def _compile(text: str) -> Predicate:
    return _Parser(text).parse()
