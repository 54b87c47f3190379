"""Piccolo's view of core's own tables (the outbox) and their migrations."""

import os

from piccolo.conf.apps import AppConfig

from core.outbox import OutboxEvent

APP_CONFIG = AppConfig(
    app_name="core",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[OutboxEvent],
    migration_dependencies=[],
    commands=[],
)
