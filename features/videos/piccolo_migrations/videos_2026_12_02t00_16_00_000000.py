from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-12-02T00:16:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "List indexes: public videos in each sort order"

# A public list's page is `visibility = 'public'` in (sort key, id) order after a cursor. With only the
# single-column indexes, both SQLite and PostgreSQL (before it has statistics) read every public video
# through videos_visibility and sort them for 21 rows; these answer the page from the index in order.
_INDEXES = {
    "videos_public_created_at": "created_at, id",
    "videos_public_view_count": "view_count, id",
    "videos_public_like_count": "like_count, id",
}


class RawSQL(Table):
    pass


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="videos", description=DESCRIPTION)

    async def run():
        for index, columns in _INDEXES.items():
            await RawSQL.raw(f"CREATE INDEX {index} ON videos (visibility, {columns})")

    async def run_backwards():
        for index in _INDEXES:
            await RawSQL.raw(f"DROP INDEX {index}")

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
