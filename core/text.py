"""The API's text rules: which characters a text field may hold and how long it may be, stated once so
that the check and the OpenAPI schema are the same thing.

Every rule is a regex pattern plus lengths in a `msgspec.Meta` (request bodies) or a Litestar
`QueryParameter` (query strings); msgspec and Litestar enforce them and the schema shows them.
`pattern_message` turns a failed pattern back into words for the error response.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.params import ParameterKwarg, QueryParameter

_MESSAGES: dict[str, str] = {}


def described_pattern(pattern: str, message: str) -> str:
    """Register what a value failing `pattern` is told (e.g. "must not contain ..."); returns it."""
    _MESSAGES[pattern] = message
    return pattern


def pattern_message(pattern: str) -> str | None:
    return _MESSAGES.get(pattern)


def whole_value(body: str) -> str:
    """A pattern that `body` must match from the first character to the last.

    Python's `$` also matches before a final newline ("ada\\n" would pass `^[a-z]+$`); the lookahead
    refuses that, and means nothing to the ECMA-262 regexes of JSON Schema, where `$` is the end.
    """
    return f"^{body}$(?!\\n)"


# C0 control characters and DEL. PostgreSQL text cannot hold NUL at all, and the rest (escape
# sequences, bells, backspaces) only ever arrive by mistake or to mislead whoever reads the text.
CONTROL = r"\x00-\x1f\x7f"
# The same but tab, line feed and carriage return, which text running over several lines keeps.
_CONTROL_BUT_LINES = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"


def _text(forbidden: str, *, not_blank: bool) -> str:
    if not not_blank:
        return whole_value(f"[^{forbidden}]*")
    # Something besides whitespace (Python's \s, what str.strip() removes): leading whitespace, then
    # the first other character. The two classes do not overlap, so the match never backtracks, and
    # without a lookahead schemathesis generates values fifty times faster.
    return whole_value(f"[^\\S{forbidden}]*[^\\s{forbidden}][^{forbidden}]*")


SINGLE_LINE = described_pattern(
    _text(CONTROL, not_blank=False), "must not contain control characters (tabs and line breaks included)"
)
SINGLE_LINE_NOT_BLANK = described_pattern(
    _text(CONTROL, not_blank=True),
    "must not be blank or contain control characters (tabs and line breaks included)",
)
MULTI_LINE = described_pattern(
    _text(_CONTROL_BUT_LINES, not_blank=False),
    "must not contain control characters other than tab and line breaks",
)
MULTI_LINE_NOT_BLANK = described_pattern(
    _text(_CONTROL_BUT_LINES, not_blank=True),
    "must not be blank or contain control characters other than tab and line breaks",
)

# Whitespace as either regex dialect has it (Python's \s and ECMA-262's differ a little), and control
# characters: what a URL never holds.
_BLANK_OR_CONTROL = r"\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
HTTP_URL = described_pattern(
    whole_value(
        "[Hh][Tt][Tt][Pp][Ss]?://"
        f"(?:[^{_BLANK_OR_CONTROL}/?#@]*@)?"  # user information
        f"(?:[^{_BLANK_OR_CONTROL}/?#@:\\[\\]]+|\\[[0-9A-Fa-f:.]+\\])"  # host name, or [IPv6 address]
        "(?::[0-9]*)?"  # port
        f"(?:[/?#][^{_BLANK_OR_CONTROL}]*)?"  # path, query, fragment
    ),
    "must be an absolute http(s) URL",
)

# Page cursors are issued as URL-safe base64; anything else was never one.
CURSOR = described_pattern(whole_value("[A-Za-z0-9_=-]*"), "is not a cursor this API issued")


def _constraints(
    pattern: str, max_length: int, min_length: int | None, description: str | None, examples: list[Any] | None
) -> dict[str, Any]:
    given = {"min_length": min_length, "description": description, "examples": examples}
    return {"pattern": pattern, "max_length": max_length, **{k: v for k, v in given.items() if v is not None}}


def single_line(
    *,
    max_length: int,
    min_length: int | None = None,
    not_blank: bool = False,
    pattern: str | None = None,
    description: str | None = None,
    examples: list[Any] | None = None,
) -> msgspec.Meta:
    """A one-line text field of a request body: no control characters at all.

    `pattern` replaces the default with a stricter one of the caller's (which must refuse control
    characters too, and be registered with `described_pattern`).
    """
    chosen = pattern or (SINGLE_LINE_NOT_BLANK if not_blank else SINGLE_LINE)
    return msgspec.Meta(**_constraints(chosen, max_length, min_length, description, examples))


def multi_line(
    *,
    max_length: int,
    min_length: int | None = None,
    not_blank: bool = False,
    description: str | None = None,
    examples: list[Any] | None = None,
) -> msgspec.Meta:
    """Text that may hold tabs and line breaks, and no other control character."""
    chosen = MULTI_LINE_NOT_BLANK if not_blank else MULTI_LINE
    return msgspec.Meta(**_constraints(chosen, max_length, min_length, description, examples))


def query_text(rule: msgspec.Meta, *, description: str | None = None) -> ParameterKwarg:
    """The same rule for a query parameter (Litestar reads QueryParameter there, not msgspec.Meta)."""
    return QueryParameter(
        pattern=rule.pattern,
        min_length=rule.min_length,
        max_length=rule.max_length,
        description=description or rule.description,
    )
