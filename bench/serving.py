"""Starting and stopping servers for the benchmarks: the production command, one worker, on loopback."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_environment(workdir: Path, **overrides: str) -> dict[str, str]:
    """Production settings on a throwaway SQLite database and index under `workdir`."""
    return {
        **os.environ,
        "APP_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{workdir}/clipdex.sqlite3",
        "VECTOR_INDEX_PATH": str(workdir / "vector-index"),
        # Benchmark clients log in more often than the production limit allows.
        "LOGIN_RATE_LIMIT": "100000",
        **overrides,
    }


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [BIN / "piccolo", "migrations", "forwards", "all"], cwd=ROOT, env=env, check=True, capture_output=True
    )


def build_catalogue(env: dict[str, str], workdir: Path, videos: int) -> list[str]:
    """Migrate the benchmark's database and fill it with `videos` videos (bench/catalogue.py); returns
    the public videos' ids."""
    migrate(env)
    started = time.perf_counter()
    ids_file = workdir / "public-ids.txt"
    subprocess.run(
        [sys.executable, "-m", "bench.catalogue", "--videos", str(videos), "--ids", str(ids_file)],
        cwd=ROOT,
        env=env,
        check=True,
    )
    print(f"catalogue of {videos} videos built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return ids_file.read_text().split()


class Server(NamedTuple):
    url: str
    pid: int

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


@contextmanager
def serving(factory: str, env: dict[str, str], log: Path, ready_path: str = "/health") -> Iterator[Server]:
    """Run `uvicorn --factory <factory>` as `make serve-production` does, with one worker, until ready."""
    port = free_port()
    with log.open("ab") as output:
        server = subprocess.Popen(
            [
                BIN / "uvicorn",
                "--factory",
                factory,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--no-access-log",
                "--proxy-headers",
            ],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=output,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"{factory} exited with {server.returncode}; see {log}")
            try:
                if httpx.get(url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{factory} was not ready in 600 s; see {log}")
            time.sleep(0.2)
        yield Server(url, server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
