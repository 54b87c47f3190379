"""Logging as the app sets it up: clipdex's own loggers at LOG_LEVEL, libraries only for warnings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
