"""Piccolo's view of the videos feature: its tables and migrations."""

import os

from piccolo.conf.apps import AppConfig

from features.videos.videos import Video, VideoLike, VideoTag

APP_CONFIG = AppConfig(
    app_name="videos",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[Video, VideoTag, VideoLike],
    migration_dependencies=["features.users.piccolo_app"],
    commands=[],
)
