"""Settings for the WSGI target: sync views."""

from gwbench_site.settings import *  # noqa: F403
from gwbench_site.settings import databases

ROOT_URLCONF = "gwbench_site.urls_sync"
# A sync worker serves one request at a time: one connection per worker process.
DATABASES = databases(pool_size=1)
