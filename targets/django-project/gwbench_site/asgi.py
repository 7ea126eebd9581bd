"""ASGI entry point (the ASGI targets): async views for HTTP, Channels for WebSockets.

Django's ASGI handler serves HTTP only; WebSockets go to a Channels consumer, the way
the Channels docs ("Tutorial", "Deploying") route them.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gwbench_site.settings_async")

# Set up Django (apps, settings) before anything imports models or consumers.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from gwbench_site.consumers import EchoConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": URLRouter([path("ws/echo", EchoConsumer.as_asgi())]),
    }
)
