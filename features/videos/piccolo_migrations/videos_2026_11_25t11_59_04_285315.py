from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-25T11:59:04:285315"
VERSION = "1.38.0"
DESCRIPTION = "Unique likes and count indexes"


class RawSQL(Table):
    pass


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="videos", description=DESCRIPTION)

    async def run():
        # Piccolo has no composite unique constraint: this index is what makes a like idempotent.
        await RawSQL.raw('CREATE UNIQUE INDEX video_likes_user_video ON video_likes ("user", video)')
        await RawSQL.raw("CREATE INDEX videos_view_count ON videos (view_count)")
        await RawSQL.raw("CREATE INDEX videos_like_count ON videos (like_count)")

    async def run_backwards():
        for index in ("video_likes_user_video", "videos_view_count", "videos_like_count"):
            await RawSQL.raw(f"DROP INDEX {index}")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
