"""What clipdex checks before it serves, and how a start-up that cannot go on says so: one
`clipdex: ...` line and a non-zero exit, never a traceback.

`python -m core.startup --workers N` is the check `make run` and `make serve-production` run before
the server starts (and, with several workers, before it forks them): the settings, the worker count
they can serve, and the search index. It prints the number of workers to start.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from litestar import Litestar
from litestar.types import Message, Receive, Send

from core.backends import build_vector_index
from core.settings import Settings, load_settings_or_exit
from core.upstash_vector import UpstashVectorUnavailable
from core.vectors import VectorIndex, VectorIndexError, VectorStoreCorruptError, VectorStoreLockedError
from core.vectors.storage import held_elsewhere

T = TypeVar("T")

# With the shared backends, the worker count of a server that was given none (as before there was a
# check); with per-process ones, one is all that works.
DEFAULT_SHARED_WORKERS = 2
EXIT_REFUSED = 2


class StartupError(Exception):
    """clipdex cannot start as configured; the message is one line saying what to change."""


class SearchIndexHeld(StartupError):
    """The embedded search index is open in another process (another clipdex)."""


def _held_message(path: str) -> str:
    return (
        f"the search index at {path} is open in another process (another clipdex?): stop that one, "
        "or give this one its own VECTOR_INDEX_PATH; several processes need Upstash Vector "
        "(UPSTASH_VECTOR_REST_URL and UPSTASH_VECTOR_REST_TOKEN)"
    )


async def open_search_index(index: VectorIndex, settings: Settings) -> None:
    """`index.open()`, with what can go wrong at start-up turned into a one-line StartupError."""
    try:
        await index.open()
    except VectorStoreLockedError:
        raise SearchIndexHeld(_held_message(settings.vector_index_path)) from None
    except VectorStoreCorruptError as exc:
        raise StartupError(f"the search index at {settings.vector_index_path} is damaged: {exc}") from None
    except VectorIndexError as exc:  # the index does not fit the configuration (Upstash's check)
        raise StartupError(str(exc)) from None
    except UpstashVectorUnavailable as exc:
        raise StartupError(f"cannot check the search index (UPSTASH_VECTOR_REST_URL): {exc}") from None


def single_process_parts(settings: Settings) -> dict[str, str]:
    """What these settings keep per process, each with the settings that would share it instead."""
    parts = {}
    if not settings.uses_upstash_vector:
        parts["the embedded search index"] = "UPSTASH_VECTOR_REST_URL and UPSTASH_VECTOR_REST_TOKEN"
    if not settings.uses_upstash_redis:
        parts["the in-process cache"] = "UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN"
    return parts


def workers_to_serve(settings: Settings, requested: str) -> tuple[int, str]:
    """How many workers to start for WORKERS=`requested` ('' = choose), and a note when it chose one.

    Several workers need every piece of state shared: with the embedded index a second worker cannot
    open it (it takes a file lock), and with the in-process cache each worker would have its own
    revoked tokens, rate limits and caches. Asked for several anyway, it refuses rather than serve
    fewer than the operator planned for.
    """
    parts = single_process_parts(settings)
    if not requested.strip():
        if not parts:
            return DEFAULT_SHARED_WORKERS, ""
        return (
            1,
            f"serving with 1 worker: {' and '.join(parts)} work in one process only (README: Production)",
        )
    try:
        workers = int(requested)
    except ValueError:
        workers = 0
    if workers < 1:
        raise StartupError(f"WORKERS must be a whole number >= 1, got {requested!r}")
    if workers > 1 and parts:
        shared_by = "; ".join(f"{part}: set {names}" for part, names in parts.items())
        raise StartupError(
            f"WORKERS={workers} needs state every worker shares, but these are per process: {shared_by} "
            "(or serve with WORKERS=1)"
        )
    return workers, ""


async def check_search_index(settings: Settings) -> None:
    """Can this configuration's search index be opened? Upstash: does the index fit (one `info`
    request); embedded on disk: is it free (its lock is not held). Nothing is loaded."""
    if settings.uses_upstash_vector:
        index = build_vector_index(settings)
        try:
            await open_search_index(index, settings)
        finally:
            await index.close()
    elif settings.vector_index_path != ":memory:" and held_elsewhere(Path(settings.vector_index_path)):
        raise SearchIndexHeld(_held_message(settings.vector_index_path))


def refuse(failure: StartupError) -> SystemExit:
    """Print the failure's one line; the SystemExit to raise."""
    print(f"clipdex: {failure}", file=sys.stderr, flush=True)
    return SystemExit(EXIT_REFUSED)


def run_command(work: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` for a command line: a StartupError ends the command with its one line."""
    try:
        return asyncio.run(work)
    except StartupError as failure:
        raise refuse(failure) from None


def _startup_error_in(exc: BaseException | None) -> StartupError | None:
    """The StartupError behind a failed start-up, also from inside the exception groups of task groups."""
    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _startup_error_in(inner)) is not None:
                return found
    return None


class OneLineStartupApp(Litestar):
    """Litestar, except that a StartupError in the lifespan prints its one `clipdex: ...` line instead
    of a traceback.

    Litestar answers a failed start-up with the ASGI message `lifespan.startup.failed` carrying the
    formatted traceback, which uvicorn logs before it exits with status 3 ("Application startup failed.
    Exiting."); one worker failing so stops a multi-worker server too. For a StartupError the message
    is emptied and the line printed instead; any other failure keeps its traceback (it is a bug).
    """

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await super().__call__(scope, receive, send)
            return

        async def send_one_line(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                # Sent from inside Litestar's `except` block: the exception being handled is the cause.
                failure = _startup_error_in(sys.exc_info()[1])
                if failure is not None:
                    print(f"clipdex: {failure}", file=sys.stderr, flush=True)
                    message = {**message, "message": ""}
            await send(message)

        await super().__call__(scope, receive, send_one_line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m core.startup",
        description="Check that clipdex can start as configured; print how many workers to start.",
    )
    parser.add_argument("--workers", default="", help="the WORKERS asked for (empty: choose)")
    arguments = parser.parse_args(argv)
    settings = load_settings_or_exit()
    try:
        workers, note = workers_to_serve(settings, arguments.workers)
        asyncio.run(check_search_index(settings))
    except StartupError as failure:
        raise refuse(failure) from None
    if note:
        print(f"clipdex: {note}", file=sys.stderr, flush=True)
    print(workers)


if __name__ == "__main__":
    main()
