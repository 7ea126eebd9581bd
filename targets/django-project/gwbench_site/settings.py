"""Django settings shared by django-gunicorn (WSGI) and the ASGI targets.

They differ only in the URLconf and the database pool's size: sync views under WSGI,
async views under ASGI (``settings_sync`` and ``settings_async``). No models, sessions,
auth or templates: the contract needs none of them, and Flask, FastAPI and Quart carry
none either. The database is used through ``django.db.connection`` alone.
"""

from __future__ import annotations

import os
from typing import Any

from psycopg.conninfo import conninfo_to_dict

DEBUG = False
# Not a secret: the benchmark signs nothing, but Django refuses to start without one.
SECRET_KEY = "gwbench-not-secret"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS: list[str] = []
DATABASE_URL = os.environ.get("GWBENCH_DATABASE_URL")


def databases(pool_size: int) -> dict[str, dict[str, Any]]:
    """DATABASES for GWBENCH_DATABASE_URL (none when unset: /db/query then answers 503).

    Django's own PostgreSQL backend on psycopg 3 with its connection pool (Django 5.1+,
    OPTIONS["pool"]: a psycopg_pool.ConnectionPool per process, opened on first use),
    ``pool_size`` connections: min = max, as psycopg's own default pool is fixed-size.
    timeout: the longest wait for a pooled connection; connect_timeout: for opening one;
    statement_timeout: the server cancels a query that hangs. Django runs in autocommit
    and, with CONN_MAX_AGE = 0 (required with a pool), hands the connection back to the
    pool at the end of every request.
    """
    if DATABASE_URL is None:
        return {}
    params: dict[str, Any] = dict(conninfo_to_dict(DATABASE_URL))
    return {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": params.pop("dbname"),
            "USER": params.pop("user", ""),
            "PASSWORD": params.pop("password", ""),
            "HOST": params.pop("host", ""),
            "PORT": params.pop("port", ""),
            "CONN_MAX_AGE": 0,
            "OPTIONS": {
                **params,
                "connect_timeout": 2,
                "options": "-c statement_timeout=15000",
                "pool": {"min_size": pool_size, "max_size": pool_size, "timeout": 2.0},
            },
        }
    }


DATABASES = databases(pool_size=1)
# CommonMiddleware sets Content-Length; it is async-capable, so async views under ASGI
# run without any thread hop.
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
APPEND_SLASH = False

USE_TZ = True
USE_I18N = False

# django.request logs every 4xx and 5xx response, a partial access log the other stacks
# do not write; keep only records that carry a traceback (unhandled exceptions).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "tracebacks_only": {
            "()": "django.utils.log.CallbackFilter",
            "callback": lambda record: record.exc_info is not None,
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"django.request": {"filters": ["tracebacks_only"]}},
}
