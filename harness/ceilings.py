"""What a request waits by design, and how many requests a stack whose workers block serves at once.

Read from an endpoint's path (its ``ms`` wait, what bounds it) and a target's
configuration (workers x threads); the analysis, the capacity search and the
report's stream section use them. This module imports only :mod:`harness.model`.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs, urlsplit

from harness.model import TargetRun

NON_BLOCKING_WORKERS = ("gevent", "greenlet", "eventlet")
"""Worker classes or models whose threads are green: a wait does not block the worker."""


def service_time_ms(endpoint: str) -> float | None:
    """The time each request waits by design: the endpoint's ``ms`` query parameter, in ms.

    None when there is none, or it is not a positive integer (``/json``).

    >>> service_time_ms("/io/upstream?ms=50")
    50.0
    """
    values = parse_qs(urlsplit(endpoint).query).get("ms", [])
    if len(values) != 1 or not values[0].isdigit():
        return None
    ms = float(values[0])
    return ms if ms > 0 else None


WorkloadKind = Literal["I/O-bound", "CPU-bound", "other"]
WORKLOAD_KINDS: tuple[WorkloadKind, ...] = ("I/O-bound", "CPU-bound", "other")


def workload_kind(endpoint: str) -> WorkloadKind:
    """What bounds an endpoint by design, from its path: ``/cpu`` CPU-bound; ``/io/`` and ``/db/`` I/O-bound.

    >>> workload_kind("/db/query?ms=20"), workload_kind("/cpu?n=30"), workload_kind("/json")
    ('I/O-bound', 'CPU-bound', 'other')
    """
    path = urlsplit(endpoint).path
    if path == "/cpu" or path.startswith("/cpu/"):
        return "CPU-bound"
    if path.startswith(("/io/", "/db/")):
        return "I/O-bound"
    return "other"


def blocking_request_slots(run: TargetRun) -> int | None:
    """How many requests a WSGI stack whose workers block can serve at once: workers x threads.

    Only for ``interface = "wsgi"`` stacks whose worker class or model names no
    green-thread library (gevent, greenlet, eventlet): gunicorn sync (1 thread)
    and gthread workers, or a server's thread pool. Threads come from the
    target's ``threads`` setting, else its ``blocking_threads``, else 1; a
    thread setting that is not a number (a pool sized by a rule, as Granian's
    ``blocking_threads``) makes the number unknown: None, never a guess. None
    for every other stack.
    """
    config = run.config
    if config.interface != "wsgi":
        return None
    described = f"{config.worker_model} {config.settings.get('worker_class', '')}".lower()
    if any(word in described for word in NON_BLOCKING_WORKERS):
        return None
    threads: object = config.settings.get("threads", config.settings.get("blocking_threads", 1))
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        return None
    return run.workers * threads


def sync_ceiling_requests_per_second(run: TargetRun, endpoint: str) -> float | None:
    """The most requests/s a blocking WSGI stack can serve on an endpoint that waits ``ms``.

    Little's law again (L = lambda W, Little 1961): at most workers x threads
    requests are in flight, each for at least the service time, so
    throughput <= workers x threads / service time (s). E.g. 3 sync workers on
    ``/io/sleep?ms=50``: 3 / 0.05 s = 60 requests/s. A sequential fan-out
    (``/io/fanout?ms=100&n=3`` without ``mode``) waits n x ms: 3 / 0.3 s = 10 requests/s.
    None when the stack does
    not block (:func:`blocking_request_slots`) or the endpoint has no ``ms``.
    """
    slots = blocking_request_slots(run)
    ms = service_time_ms(endpoint)
    if slots is None or ms is None:
        return None
    query = parse_qs(urlsplit(endpoint).query)
    calls = query.get("n", ["1"])[0]
    if urlsplit(endpoint).path == "/io/fanout" and "mode" not in query and calls.isdigit():
        ms *= max(int(calls), 1)  # a blocking worker makes the calls one after the other
    return slots * 1000.0 / ms
