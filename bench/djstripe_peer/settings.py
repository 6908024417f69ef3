"""Django settings for the dj-stripe 2.11 peer: as lean as Django allows, to be fair to it.

No middleware, DEBUG off (no query log), persistent database connections (Django's default of
a new connection per request would be unfair), the same database as the Flask systems
(``BENCH_DB``: ``sqlite:///path`` or ``postgresql+psycopg://user@host:port/name``).
"""

import os
from urllib.parse import urlsplit

SECRET_KEY = "benchmark-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "djstripe_peer.urls"
MIDDLEWARE: list[str] = []
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "djstripe",
    "djstripe_peer.benchapp",
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING_CONFIG = None


def _database(url: str) -> dict:
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parts.path[1:]}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": None,
    }


DATABASES = {"default": _database(os.environ.get("BENCH_DB", "sqlite:///djstripe.db"))}

STRIPE_LIVE_MODE = False
STRIPE_TEST_SECRET_KEY = os.environ.get("BENCH_API_KEY", "sk_test_benchmarkNotARealKey0123456789")
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"
SILENCED_SYSTEM_CHECKS = ["djstripe.I002", "djstripe.W008"]
