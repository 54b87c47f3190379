"""Piccolo's view of the videos feature: its tables and migrations."""

import os

from piccolo.conf.apps import AppConfig

from features.likes.likes import VideoLike
from features.videos.videos import Video, VideoTag

# video_likes is the likes feature's table, but this app's migrations created it: it stays registered
# here, so the migration history still matches and `piccolo migrations new videos --auto` finds nothing.
APP_CONFIG = AppConfig(
    app_name="videos",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[Video, VideoTag, VideoLike],
    migration_dependencies=["features.users.piccolo_app"],
    commands=[],
)
