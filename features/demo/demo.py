"""The demo catalogue: a demo account and the videos of demo_catalogue.json, loaded by `litestar seed`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from importlib import resources

import click
import msgspec
from click import Group
from litestar.plugins import CLIPluginProtocol
from piccolo.engine.base import Engine
from rich.progress import Progress

from core.auth import Passwords
from core.database import close_database, open_database
from core.settings import Settings
from features.users.users import User
from features.videos.videos import Video, VideoCreate, Visibility, create_video

# ---------------------------------------------------------------- schemas

DEMO_EMAIL = "demo@clipdex.example"
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "clipdex-demo-password"
DEMO_MEDIA = "https://media.clipdex.example/demo"


class DemoVideo(msgspec.Struct, forbid_unknown_fields=True):
    slug: str
    title: str
    description: str
    tags: list[str]
    duration_seconds: int
    visibility: Visibility
    transcript: str | None = None


def load_demo_catalogue() -> list[DemoVideo]:
    raw = resources.files("features.demo").joinpath("demo_catalogue.json").read_bytes()
    return msgspec.json.decode(raw, type=list[DemoVideo])


# ---------------------------------------------------------------- rules


async def seed_demo_catalogue(
    engine: Engine, passwords: Passwords, *, only_if_empty: bool = False, show_progress: bool = True
) -> int:
    """Create the demo user and any demo video it does not have yet; returns how many were added.

    Idempotent: a video is identified by its URL, which comes from its slug.
    """
    if only_if_empty and await Video.exists():
        return 0
    demo = await User.objects().where(User.username_key == DEMO_USERNAME).first()
    if demo is None:
        demo = User(
            email=DEMO_EMAIL,
            username=DEMO_USERNAME,
            username_key=DEMO_USERNAME,
            display_name="clipdex demo",
            password_hash=await passwords.hash(DEMO_PASSWORD),
        )
        await demo.save()
    have = {row["url"] for row in await Video.select(Video.url).where(Video.owner == demo.id)}
    missing = [item for item in load_demo_catalogue() if f"{DEMO_MEDIA}/{item.slug}.mp4" not in have]
    now = datetime.now(UTC)
    with Progress(disable=not show_progress) as progress:
        task = progress.add_task("Seeding demo videos", total=len(missing))
        for index, item in enumerate(missing):
            data = VideoCreate(
                title=item.title,
                url=f"{DEMO_MEDIA}/{item.slug}.mp4",
                duration_seconds=item.duration_seconds,
                description=item.description,
                thumbnail_url=f"{DEMO_MEDIA}/{item.slug}.jpg",
                tags=item.tags,
                transcript=item.transcript,
                visibility=item.visibility,
            )
            # Spread creation times over past weeks so "newest" and "oldest" differ meaningfully.
            await create_video(
                demo, data, engine, created_at=now - timedelta(hours=3 * (len(missing) - index))
            )
            progress.advance(task)
    return len(missing)


# ---------------------------------------------------------------- command line


class DemoSeedCommand(CLIPluginProtocol):
    """`litestar seed`: load the demo catalogue (see README).

    It writes the database only: like every video write, each one records an outbox change, and the
    app's relay indexes it, whether that app is running now (it holds the embedded index: this command
    could not open it) or starts later.
    """

    def __init__(self, engine: Engine, passwords: Passwords, settings: Settings) -> None:
        self._engine = engine
        self._passwords = passwords
        self._settings = settings

    async def run(self, *, only_if_empty: bool) -> int:
        await open_database(self._engine, self._settings)
        try:
            return await seed_demo_catalogue(self._engine, self._passwords, only_if_empty=only_if_empty)
        finally:
            await close_database(self._engine)

    def on_cli_init(self, cli: Group) -> None:
        @cli.command(name="seed", help="Create the demo user and the demo catalogue (idempotent).")
        @click.option("--if-empty", is_flag=True, help="Only seed when there are no videos at all.")
        def seed(if_empty: bool) -> None:
            added = asyncio.run(self.run(only_if_empty=if_empty))
            line = f"Demo catalogue: {added} videos added (log in as {DEMO_USERNAME} / {DEMO_PASSWORD})"
            if added:
                line += "; clipdex indexes them for search in the background (see /ready)"
            click.echo(line + ".")
