"""URLconf with the async views; every other path gets the contract's JSON 404."""

from django.urls import path

from gwbench_site import views_async as views

urlpatterns = [
    path("health", views.health),
    path("json", views.hello),
    path("io/sleep", views.io_sleep),
    path("io/upstream", views.io_upstream),
]

handler404 = "gwbench_site.contract.not_found"
