"""The Uvicorn worker class this target's Gunicorn runs, with its uvicorn settings pinned.

``uvicorn_worker.UvicornWorker`` (the ``uvicorn-worker`` package, which replaces the
deprecated ``uvicorn.workers``) takes Gunicorn's settings and otherwise runs uvicorn with
``loop="auto"`` and ``http="auto"``. Uvicorn's docs ("Deployment", Gunicorn) say to
subclass it to set uvicorn's own options; here they match targets/django-uvicorn.
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker as _UvicornWorker


class UvicornWorker(_UvicornWorker):
    # lifespan off: Django does not implement the ASGI lifespan protocol.
    # access_log off: as everywhere else; gunicorn's accesslog is off too.
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": "httptools",
        "ws": "websockets-sansio",
        "lifespan": "off",
        "access_log": False,
    }
