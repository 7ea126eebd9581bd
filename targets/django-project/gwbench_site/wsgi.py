"""WSGI entry point (django-gunicorn): sync views."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gwbench_site.settings_sync")

application = get_wsgi_application()
