"""Start-up that cannot go on says why in one `clipdex: ...` line and exits non-zero: the check
`make run` and `make serve-production` run first (core/startup.py), and the app's own start-up under
uvicorn. Real processes throughout: make, the litestar CLI, uvicorn children."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.settings import Settings, load_settings
from core.startup import StartupError, workers_to_serve
from tests.conftest import ROOT, clipdex_environ, migrate
from tests.demo_server import run_seed
from tests.live_server import AppServer, child_environ
from upstash_local.vector_server import LocalVectorServer

EXIT_SECONDS = 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _production(tmp_path: Path, **settings: object) -> dict[str, str]:
    """What `make serve-production` needs on the embedded backends: a real secret and a SQLite file."""
    return child_environ(
        secret_key=secrets.token_hex(32),
        database_url=f"sqlite:///{tmp_path}/production.sqlite3",
        vector_index_path=tmp_path / "vector-index",
        **settings,
    )


def _make(target: str, environ: dict[str, str], *variables: str) -> subprocess.CompletedProcess[str]:
    # -s: no echoed commands; -o: never (re)install the venv from here, whatever pyproject.toml's age.
    command = ["make", "-s", "-o", ".venv/.installed", target, *variables]
    # As a user types it in a shell: under `make test` the inherited MAKELEVEL would make this a
    # sub-make, whose failure line reads `make[1]: ***` instead.
    environ = {k: v for k, v in environ.items() if k not in {"MAKELEVEL", "MAKEFLAGS", "MFLAGS"}}
    return subprocess.run(
        command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=EXIT_SECONDS
    )


def _own_lines(output: str) -> list[str]:
    """What a failed command said, less make's `make: *** [...] Error N` and INFO log lines (the HTTP
    client logs its requests to Upstash at INFO)."""
    return [
        line for line in output.splitlines() if line.strip() and not line.startswith(("make: ***", "INFO"))
    ]


def _the_one_line(output: str) -> str:
    lines = _own_lines(output)
    assert len(lines) == 1, output
    assert lines[0].startswith("clipdex: "), output
    return lines[0]


def _exited(server: AppServer) -> int:
    try:
        return server.process.wait(timeout=EXIT_SECONDS)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"server {server.name} is still running:\n{server.log()}") from None


def _failure_lines(log: str) -> list[str]:
    """What a uvicorn child said beyond INFO lines (uvicorn's about starting, the HTTP client's)."""
    return [line for line in log.splitlines() if line.strip() and not line.startswith("INFO")]


@pytest.fixture
def wrong_vector_index() -> Iterator[LocalVectorServer]:
    """An Upstash Vector index clipdex must refuse: 128-d where its model makes 384-d vectors."""
    with LocalVectorServer.start(index_type="HYBRID", similarity="COSINE", dimension=128) as server:
        yield server


# ---------------------------------------------------------------- the worker count


def _settings(**overrides: str) -> Settings:
    return load_settings(
        {"APP_ENV": "test", **{key.upper(): value for key, value in overrides.items()}}, ROOT
    )


SHARED = {
    "upstash_redis_rest_url": "http://127.0.0.1:1",
    "upstash_redis_rest_token": "t",
    "upstash_vector_rest_url": "http://127.0.0.1:1",
    "upstash_vector_rest_token": "t",
}


def test_with_no_worker_count_the_embedded_backends_get_one_worker_and_the_shared_ones_two():
    workers, note = workers_to_serve(_settings(), "")
    assert workers == 1
    assert "1 worker" in note
    assert "embedded search index" in note
    assert "in-process cache" in note
    assert workers_to_serve(_settings(**SHARED), "") == (2, "")
    assert workers_to_serve(_settings(**SHARED), "8") == (8, "")


@pytest.mark.parametrize(
    ("overrides", "per_process"),
    [
        ({}, ["UPSTASH_VECTOR_REST_URL", "UPSTASH_REDIS_REST_URL"]),
        (
            {"upstash_vector_rest_url": "http://127.0.0.1:1", "upstash_vector_rest_token": "t"},
            ["UPSTASH_REDIS_REST_URL"],
        ),
        (
            {"upstash_redis_rest_url": "http://127.0.0.1:1", "upstash_redis_rest_token": "t"},
            ["UPSTASH_VECTOR_REST_URL"],
        ),
    ],
)
def test_several_workers_on_a_per_process_backend_are_refused_naming_the_settings_to_add(
    overrides, per_process
):
    with pytest.raises(StartupError) as refused:
        workers_to_serve(_settings(**overrides), "3")
    message = str(refused.value)
    assert "WORKERS=3" in message
    assert "WORKERS=1" in message
    for name in {"UPSTASH_VECTOR_REST_URL", "UPSTASH_REDIS_REST_URL"}:
        assert (name in message) == (name in per_process), message
    assert workers_to_serve(_settings(**overrides), "1") == (1, "")


@pytest.mark.parametrize("requested", ["0", "-2", "two", "1.5"])
def test_a_worker_count_that_is_no_whole_number_is_refused(requested):
    with pytest.raises(StartupError, match="WORKERS must be a whole number"):
        workers_to_serve(_settings(**SHARED), requested)


# ---------------------------------------------------------------- make serve-production


def test_serve_production_refuses_two_workers_on_the_embedded_backends_before_migrating(tmp_path):
    result = _make("serve-production", _production(tmp_path), "WORKERS=2", f"PORT={_free_port()}")

    assert result.returncode != 0
    line = _the_one_line(result.stdout + result.stderr)
    assert "UPSTASH_VECTOR_REST_URL" in line
    assert "UPSTASH_REDIS_REST_URL" in line
    assert "WORKERS=1" in line
    assert not (tmp_path / "production.sqlite3").exists()  # refused before the migrations ran


def test_serve_production_with_no_worker_count_serves_the_embedded_backends_with_one_worker(tmp_path):
    port = _free_port()
    command = ["make", "-s", "-o", ".venv/.installed", "serve-production", f"PORT={port}"]
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            env=_production(tmp_path),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: make, and uvicorn under it, stop together
        )
    try:
        deadline = time.monotonic() + EXIT_SECONDS
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    output = log.read_text()
    assert "clipdex: serving with 1 worker" in output, output
    assert "Traceback" not in output, output
    assert "Started parent process" not in output, output  # uvicorn's multi-worker supervisor


def test_serve_production_refuses_an_upstash_vector_index_of_the_wrong_dimension(
    tmp_path, wrong_vector_index
):
    environ = _production(
        tmp_path,
        upstash_vector_rest_url=wrong_vector_index.url,
        upstash_vector_rest_token=wrong_vector_index.token,
    )
    result = _make("serve-production", environ, "WORKERS=1", f"PORT={_free_port()}")

    assert result.returncode != 0
    line = _the_one_line(result.stdout + result.stderr)
    assert "its dimension is 128, expected 384" in line, line


# ---------------------------------------------------------------- the app's own start-up, under uvicorn


def test_a_wrong_upstash_vector_index_stops_the_server_with_one_line(tmp_path, wrong_vector_index):
    environ = {
        **os.environ,
        **clipdex_environ(
            f"sqlite:///{tmp_path}/clipdex.sqlite3",
            upstash_vector_rest_url=wrong_vector_index.url,
            upstash_vector_rest_token=wrong_vector_index.token,
        ),
    }
    server = AppServer("wrong-index", environ)
    try:
        assert _exited(server) != 0
        log = server.log()
    finally:
        server.stop()
    lines = _failure_lines(log)
    assert "Traceback" not in log, log
    assert [line for line in lines if line.startswith("clipdex: ")] == [lines[0]], log
    assert "its dimension is 128, expected 384" in lines[0]
    # uvicorn's own word on it, after ours: nothing more.
    assert lines[1:] == ["ERROR:    Application startup failed. Exiting."], log


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppServer, dict[str, str]]]:
    """A clipdex serving a migrated, empty SQLite database with its embedded index on disk (so it holds
    the index's lock), and the environment that points other processes at the same files."""
    directory = tmp_path_factory.mktemp("running")
    database_url = f"sqlite:///{directory}/clipdex.sqlite3"
    migrate(database_url)
    settings = clipdex_environ(database_url, vector_index_path=directory / "vector-index")
    server = AppServer("holder", {**os.environ, **settings})
    try:
        server.wait_until_ready()
        yield server, child_environ(**{key.lower(): value for key, value in settings.items()})
    finally:
        server.stop()


def test_a_second_server_on_a_held_index_stops_with_one_line(running):
    _, environ = running
    second = AppServer("second", environ)
    try:
        assert _exited(second) != 0
        log = second.log()
    finally:
        second.stop()
    lines = _failure_lines(log)
    assert "Traceback" not in log, log
    assert lines[0].startswith("clipdex: the search index at "), log
    assert "open in another process" in lines[0], log
    assert "VECTOR_INDEX_PATH" in lines[0]
    assert lines[1:] == ["ERROR:    Application startup failed. Exiting."], log


def test_a_second_make_run_on_a_held_index_stops_with_one_line(running):
    _, environ = running
    result = _make("run", environ, f"PORT={_free_port()}")

    assert result.returncode != 0
    line = _the_one_line(result.stdout + result.stderr)
    assert "open in another process" in line
    assert "VECTOR_INDEX_PATH" in line


def test_seeding_while_clipdex_serves_hands_the_indexing_to_it(running):
    server, environ = running
    seed = run_seed(environ)

    assert seed.returncode == 0, seed.stdout + seed.stderr
    assert "Traceback" not in seed.stdout + seed.stderr
    assert "Demo catalogue: 328 videos added" in seed.stdout, seed.stdout
    ready = httpx.get(f"{server.url}/ready", timeout=5)
    assert ready.status_code == 200
    index = ready.json()["dependencies"]["search_index"]
    if index["status"] == "catching_up":  # the relay may already be through the last of them
        assert 0 < index["details"]["pending"] <= 328, index

    deadline = time.monotonic() + 300
    while index["status"] != "ok" or index["details"]["pending"]:
        assert time.monotonic() < deadline, index
        time.sleep(0.5)
        index = httpx.get(f"{server.url}/ready", timeout=5).json()["dependencies"]["search_index"]
    hits = httpx.get(f"{server.url}/api/v1/search", params={"q": "TR-808", "mode": "keyword"}, timeout=10)
    assert hits.status_code == 200, hits.text
    assert hits.json()["items"], hits.text
    assert server.process.poll() is None, server.log()


def test_reindex_refuses_an_upstash_vector_index_of_the_wrong_dimension_in_one_line(
    tmp_path, wrong_vector_index
):
    database_url = f"sqlite:///{tmp_path}/clipdex.sqlite3"
    migrate(database_url)
    environ = child_environ(
        app_env="test",
        database_url=database_url,
        upstash_vector_rest_url=wrong_vector_index.url,
        upstash_vector_rest_token=wrong_vector_index.token,
    )
    result = subprocess.run(
        [sys.executable, "-m", "litestar", "--app", "app:create_app", "reindex"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=EXIT_SECONDS,
    )

    assert result.returncode == 2, result.stdout + result.stderr
    line = _the_one_line(result.stdout + result.stderr)
    assert "its dimension is 128, expected 384" in line, line


# ---------------------------------------------------------------- make run, the dev server


def _session(session: int) -> dict[int, str]:
    """The processes of one session (make run's, started in a session of its own): pid -> command."""
    processes = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getsid(int(entry.name)) == session:
                processes[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile
            continue
    return processes


def _loaded_onnxruntime(pid: int) -> bool:
    return "onnxruntime" in Path(f"/proc/{pid}/maps").read_text()


def _serving(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _until(condition, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.25)


def test_make_run_reloads_a_changed_file_through_a_reloader_that_never_loads_the_model(tmp_path):
    port = _free_port()
    environ = child_environ(
        database_url=f"sqlite:///{tmp_path}/dev.sqlite3", vector_index_path=tmp_path / "vector-index"
    )
    environ = {k: v for k, v in environ.items() if k not in {"MAKELEVEL", "MAKEFLAGS", "MFLAGS"}}
    log = tmp_path / "make-run.log"
    with log.open("w") as output:
        make = subprocess.Popen(
            ["make", "-s", "-o", ".venv/.installed", "run", f"PORT={port}"],
            cwd=ROOT,
            env=environ,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    probe = ROOT / "features" / f"_reload_probe_{secrets.token_hex(4)}.py"
    try:
        _until(lambda: _serving(url), 300, log)
        processes = _session(make.pid)
        assert not [command for command in processes.values() if "litestar" in command and " run" in command]
        (reloader,) = [
            pid for pid, command in processes.items() if "uvicorn" in command and "--reload" in command
        ]
        workers = [pid for pid in processes if pid != reloader and _loaded_onnxruntime(pid)]
        assert len(workers) == 1, processes  # the model is in the worker alone
        assert not _loaded_onnxruntime(reloader)

        started = log.read_text().count("Started server process")
        probe.write_text("")  # a new module under a watched directory
        _until(lambda: log.read_text().count("Started server process") > started and _serving(url), 120, log)
        assert "Reloading" in log.read_text()
        assert not _loaded_onnxruntime(reloader)
    finally:
        probe.unlink(missing_ok=True)
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=EXIT_SECONDS)
