"""Piccolo's configuration, for its migration tooling: `piccolo migrations forwards all`.

The engine comes from the same typed settings as the app. It is built on first use, so importing the
app registry (as app.py does) opens nothing.
"""

from piccolo.conf.apps import AppRegistry

PICCOLO_APPS = ["core.piccolo_app", "features.users.piccolo_app", "features.videos.piccolo_app"]

APP_REGISTRY = AppRegistry(apps=PICCOLO_APPS)


def __getattr__(name: str):
    if name == "DB":
        from core.database import build_engine
        from core.settings import load_settings_or_exit

        engine = build_engine(load_settings_or_exit())
        globals()["DB"] = engine
        return engine
    raise AttributeError(name)
