"""A clipdex app served by uvicorn for tests that need real HTTP: in a child process (several workers,
browsers, crashes), or on the test's own event loop (a service such as QStash calling the app back)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn
from litestar import Litestar

from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 60.0


def child_environ(**settings: object) -> dict[str, str]:
    """An environment for a clipdex child process: this one's, without any clipdex setting it may
    carry (or WORKERS, HOST, PORT, which the Makefile reads), plus `settings` (named as fields:
    `database_url=...`)."""
    ignored = {name.upper() for name in Settings.__struct_fields__} | {"WORKERS", "HOST", "PORT"}
    environ = {key: value for key, value in os.environ.items() if key not in ignored}
    environ.update({key.upper(): str(value) for key, value in settings.items()})
    return environ


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The tasks running `serving_in_loop` servers now: a check for tasks the app left running skips them.
SERVER_TASKS: set[asyncio.Task[None]] = set()


@asynccontextmanager
async def serving_in_loop(app: Litestar, port: int) -> AsyncIterator[str]:
    """`app` (lifespan included) behind uvicorn on this event loop, on `port`; yields its base URL."""
    sock = socket.create_server(("127.0.0.1", port))
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn-{port}")
    SERVER_TASKS.add(task)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if server.started or task.done():  # uvicorn says neither through an event
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        SERVER_TASKS.discard(task)
        sock.close()


class AppServer:
    """`uvicorn --factory app:create_app --workers 1` in a child process on a free port, seen over HTTP."""

    def __init__(self, name: str, environ: dict[str, str], *, port: int | None = None) -> None:
        """`port`: this one (for a server whose settings name its own address), else a free one."""
        self.name = name
        self.environ = environ
        self._port = port
        descriptor, path = tempfile.mkstemp(prefix=f"clipdex-server-{name}-", suffix=".log")
        os.close(descriptor)
        self._log_path = Path(path)
        self._start()

    def _start(self) -> None:
        port = self._port or free_port()
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "uvicorn", "--factory", "app:create_app", "--workers", "1"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
        with self._log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.environ, stdout=log, stderr=subprocess.STDOUT
            )

    def log(self) -> str:
        return self._log_path.read_text(errors="replace")[-4000:]

    def wait_until_ready(self) -> None:
        """Block until /ready answers 200 (database, cache and search index all up)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        for _ in range(3):  # the free port can be taken between finding it and binding it
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if httpx.get(f"{self.url}/ready", timeout=2.0).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            if self.process.poll() is None or "address already in use" not in self.log().lower():
                break
            self._start()
        raise AssertionError(f"server {self.name} did not become ready:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: the process dies mid-work, as in a crash (the log is kept for `log()`)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it does not end; only this process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_path.unlink(missing_ok=True)
