"""Settings: which env file APP_ENV selects, what wins over it, and how bad values stop start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from dotenv import dotenv_values

from core.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
GOOD_SECRET = "3f1c9a7e5b2d8f406a1e9c3b7d5f2a8e6c4b0d9f1a3e5c7b9d2f4a6c8e0b1d3f"
SETTING_NAMES = {field.encode_name for field in msgspec.structs.fields(Settings)}


def write_env_files(directory: Path) -> None:
    """One file per environment, each with values no other file and no default has."""
    files = {
        "development": "LOG_LEVEL=DEBUG\nACCESS_TOKEN_TTL_SECONDS=111\nCACHE_MAX_ENTRIES=11\n",
        "test": "LOG_LEVEL=WARNING\nACCESS_TOKEN_TTL_SECONDS=222\nCACHE_MAX_ENTRIES=22\n",
        "production": (
            f"SECRET_KEY={GOOD_SECRET}\nLOG_LEVEL=ERROR\nACCESS_TOKEN_TTL_SECONDS=333\nCACHE_MAX_ENTRIES=33\n"
        ),
    }
    for app_env, text in files.items():
        (directory / f".env.{app_env}.local").write_text(text)


@pytest.mark.parametrize(
    ("app_env", "level", "ttl", "entries"),
    [("development", "DEBUG", 111, 11), ("test", "WARNING", 222, 22), ("production", "ERROR", 333, 33)],
)
def test_app_env_selects_its_env_file(tmp_path, app_env, level, ttl, entries):
    write_env_files(tmp_path)

    settings = load_settings({"APP_ENV": app_env}, env_dir=tmp_path)

    assert settings.app_env == app_env
    assert (settings.log_level, settings.access_token_ttl_seconds, settings.cache_max_entries) == (
        level,
        ttl,
        entries,
    )


@pytest.mark.parametrize("environ", [{}, {"APP_ENV": ""}])
def test_development_is_the_default_environment(tmp_path, environ):
    write_env_files(tmp_path)

    settings = load_settings(environ, env_dir=tmp_path)

    assert settings.app_env == "development"
    assert settings.access_token_ttl_seconds == 111


def test_an_unknown_app_env_is_refused(tmp_path):
    with pytest.raises(SettingsError) as caught:
        load_settings({"APP_ENV": "staging"}, env_dir=tmp_path)

    assert caught.value.variable == "APP_ENV"
    assert "staging" in caught.value.problem


def test_development_needs_no_setup(tmp_path):
    settings = load_settings({}, env_dir=tmp_path)

    assert settings.app_env == "development"
    assert settings.secret_key  # a development key is filled in
    assert settings.is_sqlite


def test_real_environment_variables_win_over_the_file(tmp_path):
    write_env_files(tmp_path)

    settings = load_settings(
        {"APP_ENV": "test", "ACCESS_TOKEN_TTL_SECONDS": "444", "LOG_LEVEL": "INFO"}, env_dir=tmp_path
    )

    assert (settings.access_token_ttl_seconds, settings.log_level) == (444, "INFO")
    assert settings.cache_max_entries == 22  # what the environment does not set still comes from the file


def test_values_are_trimmed_and_lists_split(tmp_path):
    settings = load_settings(
        {
            "LOGIN_RATE_LIMIT": " 7 ",
            "CORS_ALLOW_ORIGINS": " https://a.example , https://b.example,, ",
            "SQLITE_BUSY_TIMEOUT_SECONDS": "2.5",
        },
        env_dir=tmp_path,
    )

    assert settings.login_rate_limit == 7
    assert settings.cors_allow_origins == ("https://a.example", "https://b.example")
    assert settings.sqlite_busy_timeout_seconds == 2.5


def _as_file_text(value: object) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("app_env", ["development", "test", "production"])
def test_the_committed_env_files_are_read_from_the_repository_root(app_env):
    env_file = ROOT / f".env.{app_env}.local"
    from_file = {k: v for k, v in dotenv_values(env_file).items() if v}
    assert from_file, f"{env_file.name} sets nothing"
    # Production's committed secret is a placeholder (checked below); supply a real one.
    environ = {"APP_ENV": app_env} | ({"SECRET_KEY": GOOD_SECRET} if app_env == "production" else {})

    settings = load_settings(environ, env_dir=ROOT)

    for name, value in from_file.items():
        if name == "SECRET_KEY" and app_env == "production":
            continue
        assert name in SETTING_NAMES, f"{env_file.name} sets unknown variable {name}"
        assert _as_file_text(getattr(settings, name.lower())) == value.replace(" ", ""), name


def test_the_committed_production_file_holds_no_usable_secret():
    with pytest.raises(SettingsError) as caught:
        load_settings({"APP_ENV": "production"}, env_dir=ROOT)

    assert caught.value.variable == "SECRET_KEY"


@pytest.mark.parametrize(
    "secret",
    [
        None,
        "",
        "change-me",
        "CHANGEME-please-0123456789abcdef0123456789",
        "dev-only-insecure-secret-key-not-for-production",
        "placeholder-0123456789abcdef0123456789abcdef",
        "too-short-but-random-9f8e7d",
    ],
)
def test_production_refuses_a_missing_or_placeholder_secret_key(tmp_path, secret):
    environ = {"APP_ENV": "production"} | ({} if secret is None else {"SECRET_KEY": secret})

    with pytest.raises(SettingsError) as caught:
        load_settings(environ, env_dir=tmp_path)

    assert caught.value.variable == "SECRET_KEY"


def test_production_accepts_a_real_secret_key(tmp_path):
    settings = load_settings({"APP_ENV": "production", "SECRET_KEY": GOOD_SECRET}, env_dir=tmp_path)

    assert settings.secret_key == GOOD_SECRET


_QSTASH = {
    "QSTASH_TOKEN": "token",
    "QSTASH_CURRENT_SIGNING_KEY": "sig_current",
    "QSTASH_NEXT_SIGNING_KEY": "sig_next",
    "PUBLIC_BASE_URL": "https://clipdex.example.com",
}


def test_the_four_qstash_settings_select_qstash_and_public_base_url_alone_does_not(tmp_path):
    assert load_settings({"APP_ENV": "test", **_QSTASH}, env_dir=tmp_path).uses_qstash
    alone = load_settings(
        {"APP_ENV": "test", "PUBLIC_BASE_URL": _QSTASH["PUBLIC_BASE_URL"]}, env_dir=tmp_path
    )
    assert not alone.uses_qstash
    assert not load_settings({"APP_ENV": "test"}, env_dir=tmp_path).uses_qstash


@pytest.mark.parametrize(
    ("variable", "environ"),
    [
        ("LOGIN_RATE_LIMIT", {"LOGIN_RATE_LIMIT": "abc"}),
        ("LOGIN_RATE_LIMIT", {"LOGIN_RATE_LIMIT": "0"}),
        ("LOGIN_RATE_WINDOW_SECONDS", {"LOGIN_RATE_WINDOW_SECONDS": "-5"}),
        ("LOG_LEVEL", {"LOG_LEVEL": "VERBOSE"}),
        ("LOG_FORMAT", {"LOG_FORMAT": "xml"}),
        ("ACCESS_TOKEN_TTL_SECONDS", {"ACCESS_TOKEN_TTL_SECONDS": "5"}),
        ("MAX_REQUEST_BODY_BYTES", {"MAX_REQUEST_BODY_BYTES": "10"}),
        ("SQLITE_BUSY_TIMEOUT_SECONDS", {"SQLITE_BUSY_TIMEOUT_SECONDS": "soon"}),
        ("PASSWORD_HASH_MEMORY_KIB", {"PASSWORD_HASH_MEMORY_KIB": "8"}),
        ("DATABASE_URL", {"DATABASE_URL": "mysql://db/clipdex"}),
        ("DATABASE_URL", {"DATABASE_URL": "sqlite:///"}),
        ("POSTGRES_POOL_MIN_SIZE", {"POSTGRES_POOL_MIN_SIZE": "30", "POSTGRES_POOL_MAX_SIZE": "20"}),
        # QStash: all four or none; the first one missing is named.
        ("QSTASH_CURRENT_SIGNING_KEY", {"QSTASH_TOKEN": "t"}),
        ("PUBLIC_BASE_URL", {**_QSTASH, "PUBLIC_BASE_URL": ""}),
        ("QSTASH_TOKEN", {**_QSTASH, "QSTASH_TOKEN": ""}),
        ("QSTASH_TOKEN", {"QSTASH_URL": "http://127.0.0.1:8081"}),
        ("PUBLIC_BASE_URL", {**_QSTASH, "PUBLIC_BASE_URL": "clipdex.example.com"}),
        ("QSTASH_URL", {**_QSTASH, "QSTASH_URL": "127.0.0.1:8081"}),
    ],
)
def test_an_invalid_value_names_its_variable(tmp_path, variable, environ):
    with pytest.raises(SettingsError) as caught:
        load_settings({"APP_ENV": "test", **environ}, env_dir=tmp_path)

    assert caught.value.variable == variable
    assert caught.value.problem
    assert variable in str(caught.value)


def test_an_invalid_value_in_the_env_file_names_its_variable(tmp_path):
    (tmp_path / ".env.test.local").write_text("LOG_LEVEL=INFO\nCACHE_MAX_ENTRIES=lots\n")

    with pytest.raises(SettingsError) as caught:
        load_settings({"APP_ENV": "test"}, env_dir=tmp_path)

    assert caught.value.variable == "CACHE_MAX_ENTRIES"


def _start_app(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run the app's start-up in a fresh interpreter, as `litestar run` or uvicorn would."""
    # Only the given settings: none may leak in from the environment pytest runs in.
    environ = {key: value for key, value in os.environ.items() if key not in SETTING_NAMES}
    environ |= {"DATABASE_URL": f"sqlite:///{tmp_path}/start.sqlite3", **settings}
    return subprocess.run(
        [sys.executable, "-c", "import app; app.create_app()"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "settings"),
    [
        ("SECRET_KEY", {"APP_ENV": "production"}),
        ("LOGIN_RATE_LIMIT", {"APP_ENV": "test", "LOGIN_RATE_LIMIT": "abc"}),
        ("QSTASH_NEXT_SIGNING_KEY", {"APP_ENV": "test", **{**_QSTASH, "QSTASH_NEXT_SIGNING_KEY": ""}}),
    ],
)
def test_start_up_with_a_bad_setting_exits_with_one_line_naming_it(tmp_path, variable, settings):
    result = _start_app(tmp_path, **settings)

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_start_up_with_good_settings_succeeds(tmp_path):
    result = _start_app(tmp_path, APP_ENV="test")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
