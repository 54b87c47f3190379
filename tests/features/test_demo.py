"""The demo catalogue: its content, the idempotent seed, and the `litestar seed` command."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

from core.auth import Passwords
from features.demo.demo import DEMO_PASSWORD, DEMO_USERNAME, load_demo_catalogue, seed_demo_catalogue
from features.videos.videos import Video, VideoCreate, clean_fields
from tests.conftest import ROOT, clipdex_environ, migrate
from tests.features.videos_support import (
    OUTBOX_SWEEP_JOB,
    VIDEOS,
    list_page,
    schedule_paused,
    serve_here,
    user_videos_url,
    walk,
)

LITESTAR = str(Path(sys.executable).with_name("litestar"))


def test_demo_catalogue_is_valid_and_varied():
    catalogue = load_demo_catalogue()

    assert len(catalogue) >= 300
    assert len({item.slug for item in catalogue}) == len(catalogue)
    assert len({item.title.lower() for item in catalogue}) == len(catalogue)
    visibility = Counter(item.visibility for item in catalogue)
    assert visibility["private"] > 0
    assert visibility["unlisted"] > 0
    assert visibility["public"] > len(catalogue) * 0.8
    assert sum(1 for item in catalogue if item.transcript) >= 10
    assert len({tag for item in catalogue for tag in item.tags}) >= 50
    assert all(len(re.findall(r"[.!?](\s|$)", item.description)) >= 2 for item in catalogue), (
        "descriptions are multi-sentence"
    )
    for item in catalogue:
        # Every entry passes the same rules as a video posted through the API.
        clean_fields(
            VideoCreate(
                title=item.title,
                url=f"https://media.example.com/{item.slug}.mp4",
                duration_seconds=item.duration_seconds,
                description=item.description,
                tags=item.tags,
                transcript=item.transcript,
                visibility=item.visibility,
            )
        )
        assert 1 <= item.duration_seconds <= 86_400
        assert len(item.description) <= 5000
        assert 1 <= len(item.tags) <= 20


async def test_seeding_twice_adds_the_catalogue_once(client, sign_up, make_settings, backend):
    expected = len(load_demo_catalogue())
    passwords = Passwords(time_cost=1, memory_kib=1024)
    async with (
        serve_here(make_settings) as http,
        # Indexing the catalogue is not what this test is about: with QStash, sweeps delivered every
        # second would index it all while the test runs (in process one relay indexes a batch at a time).
        schedule_paused(backend, OUTBOX_SWEEP_JOB, resume=False),
    ):
        engine = Video._meta.db

        first = await seed_demo_catalogue(engine, passwords, show_progress=False)
        second = await seed_demo_catalogue(engine, passwords, show_progress=False)
        only_if_empty = await seed_demo_catalogue(engine, passwords, only_if_empty=True, show_progress=False)

        assert (first, second, only_if_empty) == (expected, 0, 0)
        assert await Video.count() == expected
        by_visibility = {
            visibility: await Video.count().where(Video.visibility == visibility)
            for visibility in ("public", "unlisted", "private")
        }
        assert by_visibility["private"] > 0
        assert by_visibility["unlisted"] > 0
        # The demo account works, and a newcomer's first look shows a catalogue.
        login = await http.post(
            "/api/v1/auth/login", json={"login": DEMO_USERNAME, "password": DEMO_PASSWORD}
        )
        assert login.status_code == 200, login.text
        first_page = await list_page(http, VIDEOS)
        assert len(first_page["items"]) == 20
        assert first_page["next_cursor"]
        demo_id = first_page["items"][0]["owner_id"]
        public = await walk(http, user_videos_url(demo_id), limit=100)
        assert len(public) == by_visibility["public"]
        assert len({item["created_at"] for item in public}) == len(public)


def test_seed_command_fills_a_fresh_database(tmp_path):
    url = f"sqlite:///{tmp_path}/fresh.sqlite3"
    migrate(url)
    env = {**os.environ, **clipdex_environ(url)}

    def seed() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LITESTAR, "--app", "app:create_app", "seed", "--if-empty"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def count_videos() -> int:
        with sqlite3.connect(tmp_path / "fresh.sqlite3") as connection:
            return connection.execute("SELECT count(*) FROM videos").fetchone()[0]

    first = seed()
    assert first.returncode == 0, first.stdout + first.stderr
    seeded = count_videos()
    again = seed()
    assert again.returncode == 0, again.stdout + again.stderr

    assert seeded == len(load_demo_catalogue())
    assert f"{seeded} videos added" in first.stdout
    assert "0 videos added" in again.stdout
    assert count_videos() == seeded
