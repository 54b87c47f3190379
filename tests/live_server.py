"""A clipdex app served by uvicorn in a child process, for tests that need real HTTP and real processes
(several workers, browsers, crashes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class AppServer:
    """`uvicorn --factory app:create_app --workers 1` in a child process on a free port, seen over HTTP."""

    def __init__(self, name: str, environ: dict[str, str], *, port: int | None = None) -> None:
        """`port`: this one (for a server whose settings name its own address), else a free one."""
        self.name = name
        self._environ = environ
        self._port = port
        descriptor, path = tempfile.mkstemp(prefix=f"clipdex-server-{name}-", suffix=".log")
        os.close(descriptor)
        self._log_path = Path(path)
        self._start()

    def _start(self) -> None:
        port = self._port or _free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "uvicorn", "--factory", "app:create_app", "--workers", "1"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
        with self._log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self._environ, stdout=log, stderr=subprocess.STDOUT
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
