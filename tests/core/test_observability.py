"""Logging as the app sets it up: clipdex's own loggers at LOG_LEVEL, libraries only for warnings, lines
written a loop iteration at a time."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import weakref
from pathlib import Path

from core.observability import LoopBatchedStreamHandler
from tests.conftest import ROOT, clipdex_environ

_LOG_FROM_A_LIBRARY = """
import logging
from app import create_app
create_app()
logging.getLogger("httpx").info("HTTP Request: POST http://upstash.example/ 200 OK")
logging.getLogger("httpx").warning("a library warning")
logging.getLogger("clipdex.test").info("an app line")
"""


def _stderr_of_an_app(tmp_path: Path, **settings: object) -> str:
    environ = {"PATH": "/usr/bin:/bin", **clipdex_environ(f"sqlite:///{tmp_path}/db.sqlite3", **settings)}
    result = subprocess.run(
        [sys.executable, "-c", _LOG_FROM_A_LIBRARY],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_libraries_log_warnings_only_and_in_the_apps_format(tmp_path):
    lines = [
        json.loads(line)
        for line in _stderr_of_an_app(tmp_path, log_format="json", log_level="INFO").splitlines()
    ]

    assert [(line["logger"], line["message"]) for line in lines] == [
        ("httpx", "a library warning"),
        ("clipdex.test", "an app line"),
    ]


def test_log_level_above_warning_quiets_libraries_too(tmp_path):
    stderr = _stderr_of_an_app(tmp_path, log_format="text", log_level="ERROR")

    assert "a library warning" not in stderr
    assert "HTTP Request" not in stderr
    assert "an app line" not in stderr


class _RecordingStream:
    def __init__(self) -> None:
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        self.flushes += 1


def _handler(stream: _RecordingStream) -> logging.Logger:
    logger = logging.getLogger(f"clipdex.test.batched.{id(stream)}")
    logger.handlers[:] = [LoopBatchedStreamHandler(stream)]
    logger.handlers[0].setFormatter(logging.Formatter("%(message)s"))
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


async def test_lines_of_one_loop_iteration_are_written_together_in_order():
    stream = _RecordingStream()
    logger = _handler(stream)

    for number in range(3):
        logger.info("request %d", number)
    assert stream.writes == []  # until the loop's iteration ends
    await asyncio.sleep(0)
    logger.info("request 3")
    await asyncio.sleep(0)

    assert stream.writes == ["request 0\nrequest 1\nrequest 2\n", "request 3\n"]
    assert stream.flushes == 2


async def test_a_line_logged_off_the_loop_is_written_at_once_after_the_waiting_ones():
    stream = _RecordingStream()
    logger = _handler(stream)

    logger.info("on the loop")
    # Joined without yielding to the loop, so the line on the loop is still waiting when it logs.
    thread = threading.Thread(target=logger.info, args=("from a thread",))
    thread.start()
    thread.join()

    assert stream.writes == ["on the loop\nfrom a thread\n"]
    await asyncio.sleep(0)
    assert stream.writes == ["on the loop\nfrom a thread\n"]  # nothing is written twice


async def test_flushing_writes_what_waits_as_a_normal_exit_does():
    stream = _RecordingStream()
    logger = _handler(stream)

    logger.info("the last line")
    logging.shutdown(handlerList=[weakref.ref(logger.handlers[0])])

    assert stream.writes == ["the last line\n"]
