"""Piccolo's view of core's own tables (the outbox, the search vocabulary, counter claims) and their migrations."""

import os

from piccolo.conf.apps import AppConfig

from core.counters import CounterClaim
from core.outbox import OutboxEvent
from core.vocabulary import VOCABULARY_TABLES

APP_CONFIG = AppConfig(
    app_name="core",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[OutboxEvent, *VOCABULARY_TABLES, CounterClaim],
    migration_dependencies=[],
    commands=[],
)
