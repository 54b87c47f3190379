"""Cost of GET /api/v1/videos/{id} from the cache (hit) and from the database (miss), over HTTP.

Starts the app with uvicorn (one worker) on a fresh SQLite file seeded with the demo catalogue, then,
for every public demo video, times the first GET (a miss) and the second (a hit) from a client in
this process. Usage: .venv/bin/python bench/video_detail_cache.py
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="clipdex-bench-"))
    env = {
        **os.environ,
        "APP_ENV": "development",
        "DATABASE_URL": f"sqlite:///{workdir}/bench.sqlite3",
        "VECTOR_INDEX_PATH": str(workdir / "index"),
        "LOG_LEVEL": "WARNING",
    }
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [bin_dir / "piccolo", "migrations", "forwards", "all"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [bin_dir / "litestar", "--app", "app:create_app", "seed"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            bin_dir / "uvicorn",
            "--factory",
            "app:create_app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(100):
                try:
                    client.get("/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            ids, cursor = [], None
            while True:
                page = client.get(
                    "/api/v1/videos", params={"limit": 100, **({"cursor": cursor} if cursor else {})}
                )
                body = page.json()
                ids += [item["id"] for item in body["items"]]
                cursor = body["next_cursor"]
                if not cursor:
                    break
            miss, hit = [], []
            for video_id in ids:
                for timings, expected in ((miss, "miss"), (hit, "hit")):
                    started = time.perf_counter()
                    response = client.get(f"/api/v1/videos/{video_id}")
                    timings.append((time.perf_counter() - started) * 1000)
                    assert response.headers["x-cache"] == expected, response.headers
        print(f"videos: {len(ids)}")
        print(f"GET /api/v1/videos/{{id}} cache miss: median {statistics.median(miss):.2f} ms")
        print(f"GET /api/v1/videos/{{id}} cache hit:  median {statistics.median(hit):.2f} ms")
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
