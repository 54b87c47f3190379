"""Where Upstash Redis deliberately answers differently from Redis, the local server answers as Upstash.

Each rule rewrites one command before it goes to Redis (into a Lua script when Redis has no command
for it, so it stays one atomic step in a pipeline or a transaction) and may adjust its reply:

- SCAN with MATCH or TYPE: Upstash goes on scanning until it has COUNT (10) matches or reaches the
  end, so one call finds what one Redis step could miss (Upstash's SDK tests expect
  `SCAN 0 MATCH hash` to answer `[0, ["hash"]]` on a database of several keys);
- XTRIM with `~`: Upstash trims exactly, where Redis trims only whole internal nodes (a stream of
  100 entries trimmed to ~30 keeps all 100); LIMIT then caps how many entries go, exactly too;
- ZRANGESTORE by rank with LIMIT: Upstash applies LIMIT to the rank range, where Redis refuses LIMIT
  without BYSCORE or BYLEX;
- XINFO CONSUMERS of a group that does not exist: Upstash answers [], Redis a NOGROUP error.

A command these rules cannot parse goes to Redis unchanged, so a malformed one gets Redis's own error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import ResponseError

# Redis's RESP2 replies as the server relays them.
Reply = bytes | int | None | list["Reply"] | ResponseError

_SCAN_UNTIL_COUNT = b"""
local cursor = ARGV[1]
local wanted = tonumber(ARGV[2])
local options = {}
for i = 3, #ARGV do options[#options + 1] = ARGV[i] end
local found = {}
repeat
  local step = redis.call('SCAN', cursor, unpack(options))
  cursor = step[1]
  for _, key in ipairs(step[2]) do found[#found + 1] = key end
until cursor == '0' or #found >= wanted
return {cursor, found}
"""

_XTRIM_MAXLEN_LIMITED = b"""
local length = redis.call('XLEN', KEYS[1])
local keep = math.max(tonumber(ARGV[1]), length - tonumber(ARGV[2]))
return redis.call('XTRIM', KEYS[1], 'MAXLEN', '=', keep)
"""

_XTRIM_MINID_LIMITED = b"""
local limit = tonumber(ARGV[2])
local older = redis.call('XRANGE', KEYS[1], '-', '(' .. ARGV[1], 'COUNT', limit + 1)
if #older <= limit then
  return redis.call('XTRIM', KEYS[1], 'MINID', '=', ARGV[1])
end
return redis.call('XTRIM', KEYS[1], 'MINID', '=', older[limit + 1][1])
"""

_ZRANGESTORE_RANKS_LIMITED = b"""
local card = redis.call('ZCARD', KEYS[2])
local start, stop = tonumber(ARGV[1]), tonumber(ARGV[2])
local offset, count = tonumber(ARGV[3]), tonumber(ARGV[4])
if start < 0 then start = math.max(card + start, 0) end
if stop < 0 then stop = card + stop end
local first, last = start + offset, stop
if count >= 0 then last = math.min(stop, first + count - 1) end
if offset < 0 or first > last then first, last = 1, 0 end
if ARGV[5] == 'REV' then
  return redis.call('ZRANGESTORE', KEYS[1], KEYS[2], first, last, 'REV')
end
return redis.call('ZRANGESTORE', KEYS[1], KEYS[2], first, last)
"""

ReplyFix = Callable[[Reply], Reply]


@dataclass(frozen=True)
class Translated:
    """What to send Redis for a client's command, and how to turn Redis's reply into Upstash's."""

    command: list[bytes]
    fix: ReplyFix | None = None

    def reply(self, reply: Reply) -> Reply:
        return self.fix(reply) if self.fix is not None else reply


def translate(command: list[bytes]) -> Translated:
    name = command[0].upper()
    rule = _RULES.get(name)
    translated = rule(command) if rule is not None else None
    return translated if translated is not None else Translated(command)


def _eval(script: bytes, keys: list[bytes], arguments: list[bytes]) -> list[bytes]:
    return [b"EVAL", script, str(len(keys)).encode(), *keys, *arguments]


def _integer(value: bytes) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _scan(command: list[bytes]) -> Translated | None:
    """SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]: looped only when it filters."""
    if len(command) < 2 or len(command) % 2:
        return None
    options = command[2:]
    names = [option.upper() for option in options[::2]]
    if not set(names) <= {b"MATCH", b"COUNT", b"TYPE"} or not {b"MATCH", b"TYPE"} & set(names):
        return None
    count = 10
    for name, value in zip(names, options[1::2], strict=True):
        if name == b"COUNT":
            parsed = _integer(value)
            if parsed is None or parsed < 1:
                return None
            count = parsed
    return Translated(_eval(_SCAN_UNTIL_COUNT, [], [command[1], str(count).encode(), *options]))


def _xtrim(command: list[bytes]) -> Translated | None:
    """XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT count]: exact whenever `~` asks for approximate."""
    if len(command) not in (5, 7) or command[3] != b"~":
        return None
    key, strategy, threshold = command[1], command[2].upper(), command[4]
    if strategy not in (b"MAXLEN", b"MINID") or (strategy == b"MAXLEN" and _integer(threshold) is None):
        return None
    limit = 0
    if len(command) == 7:
        parsed = _integer(command[6])
        if command[5].upper() != b"LIMIT" or parsed is None or parsed < 0:
            return None
        limit = parsed
    if limit == 0:  # no LIMIT, or LIMIT 0, which Redis reads as no limit
        return Translated([b"XTRIM", key, strategy, b"=", threshold])
    script = _XTRIM_MAXLEN_LIMITED if strategy == b"MAXLEN" else _XTRIM_MINID_LIMITED
    return Translated(_eval(script, [key], [threshold, str(limit).encode()]))


def _zrangestore(command: list[bytes]) -> Translated | None:
    """ZRANGESTORE dst src start stop [REV] LIMIT offset count, by rank (no BYSCORE or BYLEX)."""
    if len(command) < 8:
        return None
    destination, source, start, stop, *options = command[1:]
    words = [option.upper() for option in options]
    if b"LIMIT" not in words or b"BYSCORE" in words or b"BYLEX" in words:
        return None
    at = words.index(b"LIMIT")
    reverse = b"REV" in words
    if words[:at] + words[at + 3 :] not in ([], [b"REV"]) or len(words) < at + 3:
        return None
    numbers = [_integer(value) for value in (start, stop, options[at + 1], options[at + 2])]
    if any(number is None for number in numbers):
        return None
    arguments = [start, stop, options[at + 1], options[at + 2], b"REV" if reverse else b""]
    return Translated(_eval(_ZRANGESTORE_RANKS_LIMITED, [destination, source], arguments))


def _no_group_is_empty(reply: Reply) -> Reply:
    # redis-py keeps the error code in the message or, for codes it knows, in status_code.
    if isinstance(reply, ResponseError) and "NOGROUP" in f"{getattr(reply, 'status_code', '')} {reply}":
        return []
    return reply


def _xinfo(command: list[bytes]) -> Translated | None:
    if len(command) == 4 and command[1].upper() == b"CONSUMERS":
        return Translated(command, _no_group_is_empty)
    return None


_RULES: dict[bytes, Callable[[list[bytes]], Translated | None]] = {
    b"SCAN": _scan,
    b"XTRIM": _xtrim,
    b"ZRANGESTORE": _zrangestore,
    b"XINFO": _xinfo,
}
