"""Piccolo's view of the users feature: its tables and migrations."""

import os

from piccolo.conf.apps import AppConfig

from features.users.users import User

APP_CONFIG = AppConfig(
    app_name="users",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[User],
    migration_dependencies=[],
    commands=[],
)
