"""Typed application settings, read once from the environment and `.env.<APP_ENV>.local`."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from dotenv import dotenv_values

AppEnv = Literal["development", "production", "test"]
APP_ENVS: tuple[str, ...] = ("development", "production", "test")

# Anything that looks like one of these is a placeholder, not a secret.
_PLACEHOLDER_MARKERS = ("change-me", "changeme", "placeholder", "insecure", "dev-only")
_MIN_PRODUCTION_SECRET_LENGTH = 32
_DEVELOPMENT_SECRET_KEY = "dev-only-insecure-secret-key-not-for-production"

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class Settings(msgspec.Struct, frozen=True, kw_only=True, rename="upper", forbid_unknown_fields=False):
    """Every setting clipdex reads. Field `secret_key` is the variable `SECRET_KEY`, and so on."""

    app_env: AppEnv = "development"
    secret_key: str = ""
    database_url: str = "sqlite:///data/clipdex.sqlite3"
    sqlite_busy_timeout_seconds: Annotated[float, msgspec.Meta(ge=0, le=600)] = 5.0
    # With WAL, NORMAL syncs at checkpoints instead of every commit: an acknowledged write survives the
    # process crashing, and the database stays intact through an OS crash or power cut, which may take
    # the last commits before it with it. FULL also keeps those, for an fsync per commit.
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    postgres_pool_min_size: PositiveInt = 1
    postgres_pool_max_size: PositiveInt = 10
    # Deadlines of the app's PostgreSQL connections: a database that is gone fails a request with a 503
    # after this long instead of holding it (asyncpg alone waits 60 s to connect, forever for an answer).
    postgres_connect_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 5.0
    postgres_command_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0
    access_token_ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=30 * 24 * 3600)] = 1800
    password_hash_time_cost: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3
    password_hash_memory_kib: Annotated[int, msgspec.Meta(ge=1024, le=4_194_304)] = 65_536
    login_rate_limit: PositiveInt = 5
    login_rate_window_seconds: PositiveInt = 60
    cors_allow_origins: tuple[str, ...] = ()
    max_request_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1_048_576
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    cache_max_entries: PositiveInt = 100_000
    video_cache_ttl_seconds: PositiveInt = 300
    list_cache_ttl_seconds: PositiveInt = 30
    view_flush_interval_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0
    vector_index_path: str = "data/vector-index"  # ":memory:" keeps the index in memory only
    # Stored dense vectors: float16 halves their memory (1M x 384 in ~0.8 GB) for a ~1e-3 score error.
    vector_index_precision: Literal["float32", "float16"] = "float32"
    # Namespaces this large are searched through an HNSW graph; smaller ones exactly.
    vector_ann_min_rows: Annotated[int, msgspec.Meta(ge=0)] = 20_000
    search_cache_ttl_seconds: PositiveInt = 30
    # Concurrent identical cache misses share one computation; a waiter computes for itself after this
    # long (0: never wait), so a stuck computation cannot hold the others (core/single_flight.py).
    single_flight_wait_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 2.0
    outbox_poll_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 1.0
    # Shared services for running several workers: set both halves of a pair, or neither.
    upstash_redis_rest_url: str = ""
    upstash_redis_rest_token: str = ""
    upstash_vector_rest_url: str = ""
    upstash_vector_rest_token: str = ""
    upstash_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 2.0
    # local: clipdex embeds with its own model and sends vectors; upstash: the index's hosted model embeds.
    vector_embedding: Literal["local", "upstash"] = "local"
    # With VECTOR_EMBEDDING=upstash: the hosted model the index must use (checked at start-up).
    upstash_vector_embedding_model: str = "BAAI/bge-small-en-v1.5"
    # Background jobs through Upstash QStash (core/qstash_jobs.py) instead of loops in every process:
    # set all four or none. QSTASH_URL only for another endpoint (a region, the local server).
    qstash_token: str = ""
    qstash_current_signing_key: str = ""
    qstash_next_signing_key: str = ""
    qstash_url: str = ""
    public_base_url: str = ""  # where QStash reaches this app, e.g. https://clipdex.example.com
    # GraphQL introspection (what the explorer and client generators read the schema from); unset: on
    # in development and test, off in production, where schema.graphql in the repository documents it.
    graphql_introspection: bool | None = None

    @property
    def uses_upstash_redis(self) -> bool:
        return bool(self.upstash_redis_rest_url)

    @property
    def uses_upstash_vector(self) -> bool:
        return bool(self.upstash_vector_rest_url)

    @property
    def uses_qstash(self) -> bool:
        return bool(self.qstash_token)

    @property
    def allows_graphql_introspection(self) -> bool:
        if self.graphql_introspection is None:
            return self.app_env != "production"
        return self.graphql_introspection

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    @property
    def sqlite_path(self) -> Path:
        """The database file of a `sqlite:///relative` or `sqlite:////absolute` URL."""
        return Path(self.database_url.removeprefix("sqlite:///"))


def load_settings(environ: Mapping[str, str] | None = None, env_dir: Path | None = None) -> Settings:
    """Merge `.env.<APP_ENV>.local` under the real environment and validate the result.

    Real environment variables win over the file. Raises SettingsError naming the first bad variable.
    """
    environ = os.environ if environ is None else environ
    env_dir = Path.cwd() if env_dir is None else env_dir
    app_env = environ.get("APP_ENV", "development") or "development"
    if app_env not in APP_ENVS:
        raise SettingsError("APP_ENV", f"must be one of {', '.join(APP_ENVS)}, got {app_env!r}")

    env_file = env_dir / f".env.{app_env}.local"
    from_file = (
        {k: v for k, v in dotenv_values(env_file).items() if v is not None} if env_file.is_file() else {}
    )
    merged = {**from_file, **environ, "APP_ENV": app_env}

    known = {field.encode_name: field for field in msgspec.structs.fields(Settings)}
    raw: dict[str, object] = {}
    for name, field in known.items():
        if name not in merged:
            continue
        value = merged[name].strip()
        if field.type == tuple[str, ...]:
            raw[name] = tuple(part.strip() for part in value.split(",") if part.strip())
        elif value != "":
            raw[name] = value
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(*_split_validation_error(str(exc))) from None
    _check_consistency(settings)
    if not settings.secret_key:
        # Development and test run with no setup; production was refused above.
        settings = msgspec.structs.replace(settings, secret_key=_DEVELOPMENT_SECRET_KEY)
    return settings


def _split_validation_error(message: str) -> tuple[str, str]:
    # msgspec says e.g. "Expected `int`, got `str` - at `$.LOGIN_RATE_LIMIT`".
    problem, sep, where = message.rpartition(" - at `$.")
    if not sep:
        return "settings", message
    return where.rstrip("`").split(".")[0].split("[")[0], problem


def _check_consistency(settings: Settings) -> None:
    url = settings.database_url
    if not url.startswith(("sqlite:///", "postgres://", "postgresql://")):
        raise SettingsError("DATABASE_URL", "must start with sqlite:///, postgres:// or postgresql://")
    # Checked on the URL itself: `sqlite_path` of an empty path is Path("."), which looks like a name.
    if settings.is_sqlite and not url.removeprefix("sqlite:///").strip("/"):
        raise SettingsError("DATABASE_URL", "names no SQLite file")
    for service in ("REDIS", "VECTOR"):
        url, token = f"UPSTASH_{service}_REST_URL", f"UPSTASH_{service}_REST_TOKEN"
        given = {url: getattr(settings, url.lower()), token: getattr(settings, token.lower())}
        if any(given.values()) and not all(given.values()):
            missing = next(name for name, value in given.items() if not value)
            raise SettingsError(missing, f"is required when {next(n for n, v in given.items() if v)} is set")
        if given[url] and not given[url].startswith(("http://", "https://")):
            raise SettingsError(url, "must be an http(s) URL")
    _check_qstash(settings)
    if settings.postgres_pool_min_size > settings.postgres_pool_max_size:
        raise SettingsError("POSTGRES_POOL_MIN_SIZE", "must not exceed POSTGRES_POOL_MAX_SIZE")
    if settings.app_env == "production":
        _check_production_secret(settings.secret_key)


_QSTASH_REQUIRED = (
    "QSTASH_TOKEN",
    "QSTASH_CURRENT_SIGNING_KEY",
    "QSTASH_NEXT_SIGNING_KEY",
    "PUBLIC_BASE_URL",
)


def _check_qstash(settings: Settings) -> None:
    given = {name: getattr(settings, name.lower()) for name in _QSTASH_REQUIRED}
    if settings.qstash_url and not given["QSTASH_TOKEN"]:
        raise SettingsError("QSTASH_TOKEN", "is required when QSTASH_URL is set")
    # PUBLIC_BASE_URL alone selects nothing: it may name the app for other reasons.
    if any(value for name, value in given.items() if name != "PUBLIC_BASE_URL") and not all(given.values()):
        missing = next(name for name, value in given.items() if not value)
        present = next(name for name, value in given.items() if value and name != "PUBLIC_BASE_URL")
        raise SettingsError(missing, f"is required when {present} is set (QStash runs the background jobs)")
    for name in ("QSTASH_URL", "PUBLIC_BASE_URL"):
        value = getattr(settings, name.lower())
        if value and not value.startswith(("http://", "https://")):
            raise SettingsError(name, "must be an http(s) URL")


def _check_production_secret(secret: str) -> None:
    if not secret:
        raise SettingsError("SECRET_KEY", "is required in production")
    if any(marker in secret.lower() for marker in _PLACEHOLDER_MARKERS):
        raise SettingsError("SECRET_KEY", "is still a placeholder; generate one with `openssl rand -hex 32`")
    if len(secret) < _MIN_PRODUCTION_SECRET_LENGTH:
        raise SettingsError(
            "SECRET_KEY", f"must be at least {_MIN_PRODUCTION_SECRET_LENGTH} characters in production"
        )


def load_settings_or_exit(environ: Mapping[str, str] | None = None) -> Settings:
    """load_settings for entry points: a bad setting ends the process with one line naming it."""
    try:
        return load_settings(environ)
    except SettingsError as exc:
        print(f"clipdex: invalid setting {exc.variable}: {exc.problem}", file=sys.stderr)
        raise SystemExit(2) from None
