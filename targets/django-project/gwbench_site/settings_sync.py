"""Settings for the WSGI target: sync views."""

from gwbench_site.settings import *  # noqa: F403

ROOT_URLCONF = "gwbench_site.urls_sync"
