"""What the fault tests share: real services they start themselves (so they can kill them), the app
under test, a traffic log of what every client saw, and the figures the suite reports at its end."""

from __future__ import annotations

import asyncio
import glob
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import httpx
import pytest

from tests.conftest import ROOT, Account, clipdex_environ
from tests.live_server import AppServer
from tests.services import IN_CI

API = "/api/v1"
PROBLEM_JSON = "application/problem+json"
PASSWORD = "correct-horse-battery"
# Every client request of the fault tests gives up after this long: a request that needs it has hung.
CLIENT_TIMEOUT_SECONDS = 15.0

# One line per measured outage, printed at the end of the run (see conftest.pytest_terminal_summary).
FIGURES: list[str] = []


def missing(what: str) -> NoReturn:
    """A tool or service the fault suite needs is not there: fail in CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"CI=true but {what}: the fault tests must run in CI")
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited at start:\n{log.read_text(errors='replace')[-3000:]}")
        if ready():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not come up within 30 s:\n{log.read_text(errors='replace')[-3000:]}")


class ChildProcess:
    """A server in a child process on a port fixed at construction, so it comes back at the same
    address after `kill()` (SIGKILL, as in a crash) and `start()`."""

    def __init__(
        self,
        name: str,
        command: list[str],
        ready: Callable[[], bool],
        env: dict[str, str],
        *,
        url: str,
        token: str = "",
    ) -> None:
        self.name = name
        self.url = url
        self.token = token
        self._command = command
        self._ready = ready
        self._env = env
        self._log = Path(tempfile.mkstemp(prefix=f"clipdex-faults-{name}-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                self._command, cwd=ROOT, env=self._env, stdout=log, stderr=subprocess.STDOUT
            )
        _wait(self._ready, self.process, self.name, self._log)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP: alive, its port still accepting connections, but silent (a hung server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen process would not act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.unlink(missing_ok=True)


def _answers_http(url: str, token: str, path: str, json: object = None) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            headers = {"Authorization": f"Bearer {token}"}
            response = httpx.post(f"{url}{path}", json=json, headers=headers, timeout=1)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    return ready


@contextmanager
def redis_server() -> Iterator[ChildProcess]:
    """A redis-server of our own on a free port, persisting every write (append-only file, fsync
    always): a hosted Redis that restarts keeps its data, so this one does too."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server is not installed")
    directory = tempfile.mkdtemp(prefix="clipdex-faults-redis-")
    port = free_port()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", directory, "--save", ""]
    command += ["--appendonly", "yes", "--appendfsync", "always"]

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    server = ChildProcess("redis", command, ready, dict(os.environ), url=f"redis://127.0.0.1:{port}")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def upstash_redis_server(redis_url: str) -> Iterator[ChildProcess]:
    """The local Upstash Redis REST server (upstash_local/redis_server.py) in front of `redis_url`."""
    port, token = free_port(), uuid.uuid4().hex
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "upstash_local.redis_server", "--port", str(port)]
    command += ["--redis-url", redis_url]
    environ = {**os.environ, "UPSTASH_REDIS_REST_TOKEN": token}
    ready = _answers_http(url, token, "/", json=["PING"])
    server = ChildProcess("upstash-redis", command, ready, environ, url=url, token=token)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextmanager
def upstash_vector_server() -> Iterator[ChildProcess]:
    """The local Upstash Vector REST server (upstash_local/vector_server.py), keeping its index in a
    directory of its own: Upstash keeps an index through an outage, so this one does too."""
    directory = tempfile.mkdtemp(prefix="clipdex-faults-vector-")
    port, token = free_port(), uuid.uuid4().hex
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "upstash_local.vector_server", "--port", str(port), "--path", directory]
    command += ["--index-type", "HYBRID", "--similarity", "COSINE", "--dimension", "384"]
    command += ["--log-level", "warning"]
    environ = {**os.environ, "UPSTASH_VECTOR_REST_TOKEN": token}
    ready = _answers_http(url, token, "/info")
    server = ChildProcess("upstash-vector", command, ready, environ, url=url, token=token)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda path: int(Path(path).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path is None or shutil.which("initdb") is None:
        missing("PostgreSQL's initdb and pg_ctl are not installed (/usr/lib/postgresql/*/bin)")
    return Path(on_path).parent


class ThrowawayPostgres:
    """A PostgreSQL cluster of our own in a temp directory, on a free loopback port, to stop and start
    at will: the shared server on 5432 is never touched. initdb and pg_ctl refuse to run as root, so
    as root they run as the `postgres` user, who owns the directory."""

    def __init__(self) -> None:
        self._bin = _postgres_bin()
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                missing("runuser is not installed (initdb and pg_ctl must not run as root)")
            self._as_postgres = [runuser, "-u", "postgres", "--"]
        self.directory = Path(tempfile.mkdtemp(prefix="clipdex-faults-pg-"))
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self.port = free_port()
        self._data = self.directory / "data"
        self._run("initdb", "-D", str(self._data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *arguments: str) -> None:
        result = subprocess.run(
            [*self._as_postgres, str(self._bin / tool), *arguments],
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{tool} failed: {result.stdout}{result.stderr}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        log = str(self.directory / "log")
        self._run("pg_ctl", "-D", str(self._data), "-l", log, "-w", "-t", "60", "-o", options, "start")

    def create_database(self, name: str, template: str = "template1") -> None:
        statements = [f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}" TEMPLATE "{template}"']
        connection = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-v", "ON_ERROR_STOP=1"]
        self._run("psql", *connection, *(part for sql in statements for part in ("-c", sql)))

    def stop(self, mode: str) -> None:
        """`fast`: a clean shutdown that ends every session; `immediate`: as in a crash (WAL replay next)."""
        self._run("pg_ctl", "-D", str(self._data), "-m", mode, "-w", "-t", "60", "stop")

    def remove(self) -> None:
        if (self._data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def app_server(name: str, database_url: str, **settings: object) -> Iterator[AppServer]:
    """The app under test: uvicorn in a child process (tests/live_server.py), ready when yielded."""
    server = AppServer(name, {**os.environ, **clipdex_environ(database_url, **settings)})
    try:
        server.wait_until_ready()
        yield server
    finally:
        # The first unexpected error the app logged, for the report of a failing test (captured output).
        text = server._log_path.read_text(errors="replace")  # the whole log: log() has only its tail
        if (first := text.find("unhandled error")) >= 0:
            print(f"app {name} logged an unhandled error:\n{text[first : first + 6000]}")
        server.stop()


@dataclass(frozen=True)
class Outcome:
    """What one client saw of one request."""

    phase: str
    action: str
    status: int | None  # None: no HTTP answer at all (refused, reset, timed out)
    seconds: float
    problem_type: str = ""
    retry_after: str | None = None
    media_type: str = ""
    error: str = ""
    answered_at: float = 0.0  # time.monotonic() when the answer (or the failure) came

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 400

    def describe(self) -> str:
        if self.status is None:
            return self.error
        return f"{self.status} {self.problem_type.removeprefix('urn:clipdex:problem:')}".strip()


@dataclass
class TrafficLog:
    """Every request the clients of one test sent, by phase (`before`, `outage`, `after`, ...)."""

    outcomes: list[Outcome] = field(default_factory=list)
    phase: str = "before"

    async def send(
        self, http: httpx.AsyncClient, action: str, method: str, url: str, **options: Any
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await http.request(method, url, timeout=CLIENT_TIMEOUT_SECONDS, **options)
        except httpx.HTTPError as exc:
            now = time.monotonic()
            self.outcomes.append(
                Outcome(self.phase, action, None, now - started, error=repr(exc), answered_at=now)
            )
            return None
        # The phase the answer came in: a request sent just before the outage and cut off by it counts
        # as one of the outage's.
        phase = self.phase
        media_type = response.headers.get("content-type", "").split(";")[0]
        problem_type = ""
        if media_type == PROBLEM_JSON:
            problem_type = response.json().get("type", "")
        now = time.monotonic()
        self.outcomes.append(
            Outcome(
                phase,
                action,
                response.status_code,
                now - started,
                problem_type,
                response.headers.get("retry-after"),
                media_type,
                answered_at=now,
            )
        )
        return response

    def of(self, phase: str) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.phase == phase]

    def failures(self, phase: str) -> list[Outcome]:
        return [outcome for outcome in self.of(phase) if not outcome.ok]

    def worst_seconds(self, phase: str) -> float:
        return max((outcome.seconds for outcome in self.of(phase)), default=0.0)

    def report(self, test: str, phase: str, note: str = "") -> str:
        """One figures line for the end-of-run summary, e.g. `postgres fast stop: 412 requests ...`."""
        outcomes, failed = self.of(phase), self.failures(phase)
        how = ", ".join(f"{count} x {kind}" for kind, count in Counter(o.describe() for o in failed).items())
        line = (
            f"{test} [{phase}]: {len(outcomes)} requests, {len(outcomes) - len(failed)} served, "
            f"{len(failed)} failed ({how or 'none'}), worst {self.worst_seconds(phase):.2f} s"
        )
        if note:
            line += f"; {note}"
        FIGURES.append(line)
        return line


def assert_unavailable_problems(failed: list[Outcome], *kinds: str) -> None:
    """Each failure is a 503 problem+json of one of `kinds`, with Retry-After: nothing else (no 500,
    no dropped connection) is an acceptable way to fail while a dependency is down."""
    wanted = {f"urn:clipdex:problem:{kind}" for kind in kinds}
    for outcome in failed:
        assert outcome.status == 503, outcome
        assert outcome.media_type == PROBLEM_JSON, outcome
        assert outcome.problem_type in wanted, outcome
        assert outcome.retry_after is not None, outcome
        assert int(outcome.retry_after) >= 1, outcome


async def register(http: httpx.AsyncClient) -> Account:
    username = f"user_{uuid.uuid4().hex[:10]}"
    body = {"email": f"{username}@example.com", "username": username, "password": PASSWORD}
    response = await http.post(f"{API}/auth/register", json=body)
    assert response.status_code == 201, response.text
    login = await http.post(f"{API}/auth/login", json={"login": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return Account(response.json()["id"], body["email"], username, PASSWORD, login.json()["access_token"])


def video_body(label: str) -> dict[str, Any]:
    slug = uuid.uuid4().hex[:10]
    return {
        "title": f"Fault drill {label} {slug}",
        "description": f"Recorded while testing {label}; marker {slug}.",
        "url": f"https://media.example.com/{slug}.mp4",
        "duration_seconds": 60,
        "tags": ["faults"],
    }


@dataclass
class Acknowledged:
    """The writes the app answered with a 2xx: each must be in the database afterwards."""

    videos: dict[str, str] = field(default_factory=dict)  # id -> title
    likes: set[tuple[str, str]] = field(default_factory=set)  # (user id, video id)
    views: Counter[str] = field(default_factory=Counter)  # video id -> views accepted


async def write_traffic(
    log: TrafficLog,
    http: httpx.AsyncClient,
    accounts: list[Account],
    acknowledged: Acknowledged,
    keep_going: Callable[[], bool],
    *,
    label: str,
    seed: int,
    pause_seconds: float = 0.02,
    max_requests: int = 2000,
) -> None:
    """One client's loop of creates, likes, views and reads until `keep_going()` turns false (or
    `max_requests`), recording in `acknowledged` every write that got a 2xx."""
    chooser = random.Random(seed)
    for _ in range(max_requests):
        if not keep_going():
            return
        account = chooser.choice(accounts)
        known = list(acknowledged.videos)
        actions = ["create", "like", "like", "view", "read", "list", "me"]
        action = chooser.choice(actions) if known else "create"
        if action == "create":
            response = await log.send(
                http, action, "POST", f"{API}/videos", json=video_body(label), headers=account.headers
            )
            if response is not None and response.status_code == 201:
                created = response.json()
                acknowledged.videos[created["id"]] = created["title"]
        elif action == "like":
            video_id = chooser.choice(known)
            response = await log.send(
                http, action, "POST", f"{API}/videos/{video_id}/like", headers=account.headers
            )
            if response is not None and response.status_code == 200:
                acknowledged.likes.add((account.id, video_id))
        elif action == "view":
            video_id = chooser.choice(known)
            response = await log.send(http, action, "POST", f"{API}/videos/{video_id}/views")
            if response is not None and response.status_code == 202:
                acknowledged.views[video_id] += 1
        elif action == "read":
            await log.send(http, action, "GET", f"{API}/videos/{chooser.choice(known)}")
        elif action == "me":
            await log.send(http, action, "GET", f"{API}/users/me", headers=account.headers)
        else:
            await log.send(http, action, "GET", f"{API}/videos", params={"limit": 5})
        await asyncio.sleep(pause_seconds)


@dataclass(frozen=True)
class StoredState:
    """What the database holds afterwards, read straight from it (not through the app)."""

    videos: dict[str, tuple[str, int, int]]  # id -> (title, like_count, view_count)
    likes: set[tuple[str, str]]  # (user id, video id)


_VIDEOS = "SELECT id, title, like_count, view_count FROM videos"
_LIKES = 'SELECT "user", video FROM video_likes'


async def stored_state(database_url: str) -> StoredState:
    if database_url.startswith("sqlite:"):
        path = database_url.removeprefix("sqlite:///")
        with closing(sqlite3.connect(path, timeout=10)) as connection:
            videos, likes = connection.execute(_VIDEOS).fetchall(), connection.execute(_LIKES).fetchall()
    else:
        connection = await asyncpg.connect(database_url, timeout=10)
        try:
            videos, likes = await connection.fetch(_VIDEOS), await connection.fetch(_LIKES)
        finally:
            await connection.close()
    return StoredState(
        {str(uuid.UUID(str(row[0]))): (row[1], row[2], row[3]) for row in videos},
        {(str(uuid.UUID(str(row[0]))), str(uuid.UUID(str(row[1])))) for row in likes},
    )


def assert_nothing_lost(state: StoredState, acknowledged: Acknowledged) -> None:
    """Every acknowledged video and like is stored, and each video's like_count equals its like rows."""
    missing = [video for video in acknowledged.videos if video not in state.videos]
    assert not missing, f"{len(missing)} acknowledged videos are gone: {missing[:5]}"
    renamed = [video for video, title in acknowledged.videos.items() if state.videos[video][0] != title]
    assert not renamed, renamed
    lost_likes = acknowledged.likes - state.likes
    assert not lost_likes, f"{len(lost_likes)} acknowledged likes are gone: {list(lost_likes)[:5]}"
    rows = Counter(video for _, video in state.likes)
    wrong = {video: (like_count, rows[video]) for video, (_, like_count, _) in state.videos.items()}
    wrong = {video: counts for video, counts in wrong.items() if counts[0] != counts[1]}
    assert not wrong, f"like_count differs from the like rows (count, rows): {wrong}"


def views_counted(state: StoredState, acknowledged: Acknowledged) -> int:
    return sum(state.videos[video][2] for video in acknowledged.views if video in state.videos)


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Wait until `check()` is true; how long it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what}: not within {within:g} s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started
