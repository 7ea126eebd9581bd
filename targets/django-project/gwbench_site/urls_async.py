"""URLconf with the async views; every other path gets the contract's JSON 404.

WebSockets (/ws/echo) never reach it: gwbench_site.asgi routes them to Channels.
"""

from django.urls import path

from gwbench_site import views_async as views

urlpatterns = [
    path("health", views.health),
    path("json", views.hello),
    path("io/sleep", views.io_sleep),
    path("io/upstream", views.io_upstream),
    path("io/fanout", views.io_fanout),
    path("db/query", views.db_query),
    path("validate", views.validate),
    path("cpu", views.cpu),
    path("stream/sse", views.stream_sse),
]

handler404 = "gwbench_site.contract.not_found"
