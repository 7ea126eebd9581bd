"""Settings for the ASGI targets: async views."""

from gwbench_site.settings import *  # noqa: F403
from gwbench_site.settings import databases

ROOT_URLCONF = "gwbench_site.urls_async"
# An event loop serves many requests at once, each query in its request's own thread
# (sync_to_async); PostgreSQL serves a few hundred connections in all, so 20 per worker
# process, as in the other async stacks, and requests beyond wait for a free one.
DATABASES = databases(pool_size=20)
