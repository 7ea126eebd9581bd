"""Django settings shared by django-gunicorn (WSGI) and django-uvicorn (ASGI).

The two differ only in the URLconf: sync views under WSGI, async views under ASGI
(``settings_sync`` and ``settings_async``). No database, sessions, auth or templates:
the contract needs none of them, and Flask, FastAPI and Quart carry none either.
"""

DEBUG = False
# Not a secret: the benchmark signs nothing, but Django refuses to start without one.
SECRET_KEY = "gwbench-not-secret"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
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
