"""URLconf with the sync views; every other path gets the contract's JSON 404."""

from django.urls import path

from gwbench_site import views_sync as views
from gwbench_site.contract import websocket_not_supported

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
    path("ws/echo", websocket_not_supported),
]

handler404 = "gwbench_site.contract.not_found"
