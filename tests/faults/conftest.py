"""Fixtures of the fault suite: databases migrated once per run, its own PostgreSQL cluster, and the
figures it prints at the end of the run."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import migrate
from tests.faults.support import FIGURES, ThrowawayPostgres

_POSTGRES_TEMPLATE = "clipdex_migrated"


@pytest.fixture(scope="session")
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL cluster of the fault suite's own, running, with a migrated template database;
    tests may stop it but leave it running."""
    cluster = ThrowawayPostgres()  # fails or skips at once when initdb, pg_ctl or runuser is missing
    try:
        cluster.start()
        cluster.create_database(_POSTGRES_TEMPLATE)
        migrate(cluster.url(_POSTGRES_TEMPLATE))
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def postgres_database(throwaway_postgres: ThrowawayPostgres) -> Callable[[str], str]:
    """Create a migrated database of this name in the throwaway cluster (a copy of the template); its URL."""

    def create(name: str) -> str:
        throwaway_postgres.create_database(name, template=_POSTGRES_TEMPLATE)
        return throwaway_postgres.url(name)

    return create


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("faults-template") / "clipdex.sqlite3"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_database(_migrated_sqlite: Path, tmp_path: Path) -> str:
    """A migrated SQLite database of this test's own (a copy of one migrated per run); its URL."""
    path = tmp_path / "clipdex.sqlite3"
    with closing(sqlite3.connect(_migrated_sqlite)) as source, closing(sqlite3.connect(path)) as copy:
        source.backup(copy)
    return f"sqlite:///{path}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("fault suite figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
