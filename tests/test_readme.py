"""README.md's API tour runs as printed: its marked shell blocks, in order, in one bash process, against
a live clipdex on a fresh SQLite database seeded with the demo catalogue (as after `make run`), each
command's HTTP status checked against what README says: 2xx, or the status of a trailing `# -> 401`."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, migrate
from tests.demo_server import seed_demo_catalogue
from tests.live_server import AppServer, child_environ

TOUR_MARKER = "<!-- api-tour -->"
_TOUR_BLOCK = re.compile(re.escape(TOUR_MARKER) + r"\s*```sh\n(.*?)```", re.DOTALL)
_EXPECTED_STATUS = re.compile(r"#\s*->\s*(\d{3})\s*$")
_README_PORT = re.compile(r"(?<=\s):8000(?=/)")
# The URL of each httpie call: `http`, its options, perhaps a method, then the URL.
_HTTPIE_URL = re.compile(r"(?:^|[\s(])http(?:\s+-\S+)*(?:\s+[A-Z]+)?\s+(\S+)", re.MULTILINE)
_COMMENT = re.compile(r"(?:^|\s)#.*$", re.MULTILINE)
TOUR_SECONDS = 600

# `http` is httpie from .venv with what a script needs: no stdin, an exit status from the HTTP status
# (--check-status), and the status line printed unless the command chose what to print. Each call
# appends its status (or "2xx" when it printed no status line) to $TOUR_STATUSES, for `check`.
HARNESS = r"""
set -o pipefail
http() {
    local print=(--print=hb) arg
    for arg in "$@"; do
        case $arg in --print=*|-p|--print|--headers|-h|--body|-b|--verbose|-v) print=() ;; esac
    done
    local output rc status
    output=$("$TOUR_HTTPIE" --ignore-stdin --check-status --timeout=30 "${print[@]}" "$@")
    rc=$?
    printf '%s\n' "$output"
    status=$(printf '%s\n' "$output" | sed -n '1s#^HTTP/[0-9.]* \([0-9][0-9][0-9]\).*#\1#p')
    if [ -z "$status" ]; then
        if [ "$rc" = 0 ]; then status=2xx; else status="no status (httpie exit $rc)"; fi
    fi
    echo "$status" >>"$TOUR_STATUSES"
    return "$rc"
}
# check NUMBER EXPECTED EXIT: EXPECTED is a status, or 2xx (the command must also succeed).
check() {
    local got
    got=$(tail -n 1 "$TOUR_STATUSES")
    if [ "$2" = 2xx ]; then
        case $got in 2*|"") [ "$3" = 0 ] && { : >"$TOUR_STATUSES"; return 0; } ;; esac
    elif [ "$got" = "$2" ]; then
        : >"$TOUR_STATUSES"
        return 0
    fi
    echo "README tour command $1: expected $2, got ${got:-no HTTP call} (exit $3)" >&2
    exit 1
}
"""


@dataclass(frozen=True)
class TourCommand:
    text: str
    expected: str  # an HTTP status, or "2xx"


def tour_commands(readme: str) -> list[TourCommand]:
    """The commands of README's tour blocks, in order: a command spans the lines its trailing
    backslashes join; comment-only and blank lines are skipped."""
    commands: list[TourCommand] = []
    for block in _TOUR_BLOCK.findall(readme):
        lines: list[str] = []
        for line in block.splitlines():
            if not lines and (not line.strip() or line.lstrip().startswith("#")):
                continue
            lines.append(line)
            if line.endswith("\\"):
                continue
            expected = _EXPECTED_STATUS.search(lines[-1])
            commands.append(TourCommand("\n".join(lines), expected.group(1) if expected else "2xx"))
            lines = []
        assert not lines, f"a tour block ends inside a command: {lines}"
    return commands


def tour_script(commands: list[TourCommand], port: int) -> str:
    steps = []
    for number, command in enumerate(commands, 1):
        steps.append(_README_PORT.sub(f":{port}", command.text))
        steps.append(f"check {number} {command.expected} $?")
    return HARNESS + "\n".join(steps) + "\n"


def test_the_tour_is_found_with_its_expected_statuses():
    commands = tour_commands((ROOT / "README.md").read_text())

    assert len(commands) > 30
    assert {"401", "403", "404", "409", "304"} <= {command.expected for command in commands}
    # Every call goes to the server the tour was started for (the address the test substitutes).
    calls = [url for command in commands for url in _HTTPIE_URL.findall(_COMMENT.sub("", command.text))]
    assert len(calls) > 30
    assert all(url.startswith(":8000/") for url in calls), calls
    assert not any(re.search(r"<[a-z][a-z_-]*>", command.text) for command in commands), "placeholder left"


@pytest.fixture
def demo_server(tmp_path: Path):
    """clipdex as `make run` leaves it: development settings (the 5-a-minute login limit included),
    the demo catalogue seeded, the embedded index on disk, here under a temp directory."""
    database_url = f"sqlite:///{tmp_path}/clipdex.sqlite3"
    environ = child_environ(
        app_env="development", database_url=database_url, vector_index_path=tmp_path / "index"
    )
    migrate(database_url)
    seed_demo_catalogue(environ, "--if-empty")
    server = AppServer("readme", environ)
    try:
        server.wait_until_ready()
        yield server
    finally:
        server.stop()


def test_the_readme_tour_runs_as_printed(demo_server, tmp_path):
    commands = tour_commands((ROOT / "README.md").read_text())
    port = int(demo_server.url.rsplit(":", 1)[1])
    script = tmp_path / "tour.sh"
    script.write_text(tour_script(commands, port))
    statuses = tmp_path / "statuses"
    statuses.write_text("")

    result = subprocess.run(
        ["bash", str(script)],
        cwd=ROOT,
        env={
            **{key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"},
            "TOUR_HTTPIE": str(ROOT / ".venv" / "bin" / "http"),
            "TOUR_STATUSES": str(statuses),
            # httpie keeps sessions and its config here: not in the user's home.
            "HTTPIE_CONFIG_DIR": str(tmp_path / "httpie"),
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TOUR_SECONDS,
    )

    assert result.returncode == 0, (
        f"{result.stderr}\n--- output:\n{result.stdout[-6000:]}\n--- server:\n{demo_server.log()}"
    )


def _run_with_answers(
    tmp_path: Path, readme: str, answers: list[tuple[str, int]]
) -> subprocess.CompletedProcess:
    """Run a tour whose httpie is a stand-in answering each call with the next (status line, exit)."""
    stand_in = tmp_path / "fake-http"
    replies = "\n".join(f"{line}|{code}" for line, code in answers)
    stand_in.write_text(
        "#!/bin/bash\n"
        f'n=$(wc -l <"{tmp_path}/calls"); echo >>"{tmp_path}/calls"\n'
        f"reply=$(sed -n \"$((n + 1))p\" <<'EOF'\n{replies}\nEOF\n)\n"
        'printf "%s\\n" "${reply%|*}"; exit "${reply##*|}"\n'
    )
    stand_in.chmod(0o755)
    (tmp_path / "calls").write_text("")
    (tmp_path / "statuses").write_text("")
    script = tmp_path / "tour.sh"
    script.write_text(tour_script(tour_commands(readme), 1234))
    return subprocess.run(
        ["bash", str(script)],
        env={**os.environ, "TOUR_HTTPIE": str(stand_in), "TOUR_STATUSES": str(tmp_path / "statuses")},
        capture_output=True,
        text=True,
        timeout=30,
    )


TWO_CALLS = f"{TOUR_MARKER}\n```sh\nhttp :8000/a\nhttp :8000/b  # -> 401\n```\n"


@pytest.mark.parametrize(
    ("answers", "complaint"),
    [
        ([("HTTP/1.1 200 OK", 0), ("HTTP/1.1 401 Unauthorized", 4)], None),
        ([("HTTP/1.1 200 OK", 0), ("HTTP/1.1 404 Not Found", 4)], "command 2: expected 401, got 404"),
        (
            [("HTTP/1.1 500 Internal Server Error", 5), ("HTTP/1.1 401 Unauthorized", 4)],
            "command 1: expected 2xx, got 500",
        ),
        (
            [("", 7), ("HTTP/1.1 401 Unauthorized", 4)],
            "command 1: expected 2xx, got no status (httpie exit 7)",
        ),
    ],
)
def test_the_tour_harness_checks_each_status_against_readme(tmp_path, answers, complaint):
    result = _run_with_answers(tmp_path, TWO_CALLS, answers)

    if complaint is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1, result.stdout
        assert complaint in result.stderr, result.stderr
