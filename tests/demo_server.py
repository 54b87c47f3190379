"""A clipdex server on a fresh copy of the demo catalogue, fully indexed: for the search page's browser
tests and the README's screenshot of it (tests/search_page_screenshot.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from features.demo.demo import load_demo_catalogue
from tests.conftest import clipdex_environ, migrate
from tests.live_server import ROOT, AppServer

INDEX_SECONDS = 120.0  # 328 demo videos take ~20 s on 2 cores


def run_seed(environ: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    """`litestar seed OPTIONS`, as `make seed` (or `make run`, with --if-empty) runs it."""
    return subprocess.run(
        [sys.executable, "-m", "litestar", "--app", "app:create_app", "seed", *options],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def seed_demo_catalogue(environ: dict[str, str], *options: str) -> None:
    result = run_seed(environ, *options)
    assert result.returncode == 0, result.stdout + result.stderr


def wait_until_indexed(server: AppServer) -> None:
    """Block until /ready says the search index has no change waiting (not `catching_up`), and the
    suggestions know the last demo video too (each worker refreshes its copy of the vocabulary
    shortly after the index changed)."""
    deadline = time.monotonic() + INDEX_SECONDS
    status: object = None
    while time.monotonic() < deadline:
        answer = httpx.get(f"{server.url}/ready", timeout=5.0)
        status = answer.json()["dependencies"]["search_index"]
        if answer.status_code == 200 and status["status"] == "ok":
            break
        time.sleep(0.25)
    else:
        raise AssertionError(f"the search index did not catch up: {status}\n{server.log()}")
    last_public = next(item for item in reversed(load_demo_catalogue()) if item.visibility == "public")
    while time.monotonic() < deadline:
        suggested = httpx.get(
            f"{server.url}/api/v1/search/suggest", params={"q": last_public.title}, timeout=5.0
        )
        if suggested.status_code == 200 and any(
            item["text"] == last_public.title for item in suggested.json()["items"]
        ):
            return
        time.sleep(0.25)
    raise AssertionError(f"suggestions do not know {last_public.title!r}: {suggested.text}")


def start_demo_server(directory: Path, name: str = "demo", **settings: object) -> AppServer:
    """Migrate and seed a SQLite file in `directory`, start the app on it (its index beside it, and
    these settings), and return once every demo video is searchable. The caller stops the server."""
    database_url = f"sqlite:///{directory / 'clipdex.sqlite3'}"
    environ = {
        **os.environ,
        **clipdex_environ(database_url, vector_index_path=directory / "vector-index", **settings),
    }
    migrate(database_url)
    seed_demo_catalogue(environ)
    server = AppServer(name, environ)
    try:
        server.wait_until_ready()
        wait_until_indexed(server)
    except BaseException:
        server.stop()
        raise
    return server
