"""Where the real services the tests talk to are, and whether a missing one fails (CI) or skips.

`TEST_DATABASE_URL` names the PostgreSQL database (unset: the PostgreSQL runs skip outside CI) and
`TEST_REDIS_URL` the Redis server, without a database number (each suite picks its own database).
"""

from __future__ import annotations

import os

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")
TEST_REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
