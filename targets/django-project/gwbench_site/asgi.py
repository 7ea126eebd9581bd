"""ASGI entry point (django-uvicorn): async views."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gwbench_site.settings_async")

application = get_asgi_application()
