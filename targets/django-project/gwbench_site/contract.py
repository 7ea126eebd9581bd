"""Pieces of targets/CONTRACT.md shared by the sync and the async views."""

from __future__ import annotations

import os
import re

import psycopg
from django.db import DatabaseError, Error, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from psycopg_pool import PoolTimeout

MAX_MS = 10_000
MAX_EVENTS = 1_000
_INTEGER = re.compile(r"-?[0-9]+")
UPSTREAM_URL = os.environ.get("GWBENCH_UPSTREAM_URL", "http://127.0.0.1:8081")
DATABASE_CONFIGURED = os.environ.get("GWBENCH_DATABASE_URL") is not None
DB_QUERY = "SELECT pg_sleep(%s), 1"


def parse_int(name: str, values: list[str], low: int, high: int) -> int | str:
    """Return the parameter's value, or the contract's error reason."""
    if not values:
        return f"{name} is required"
    raw = values[0]
    if not _INTEGER.fullmatch(raw):
        return f"{name} must be an integer"
    digits = raw.lstrip("-").lstrip("0") or "0"
    # Length first: int() of a huge digit string is slow, and refused past 4300 digits.
    if len(digits) > len(str(high)):
        return f"{name} must be between {low} and {high}"
    value = -int(digits) if raw.startswith("-") else int(digits)
    if not low <= value <= high:
        return f"{name} must be between {low} and {high}"
    return value


def parse_ms(values: list[str]) -> int | str:
    """Return the delay in ms, or the contract's error reason."""
    return parse_int("ms", values, 0, MAX_MS)


def parse_sse(request: HttpRequest) -> tuple[int, int] | JsonResponse:
    """``(events, interval_ms)`` of /stream/sse, or the contract's 400."""
    events = parse_int("events", request.GET.getlist("events"), 1, MAX_EVENTS)
    if isinstance(events, str):
        return JsonResponse({"error": events}, status=400)
    interval_ms = parse_int("interval_ms", request.GET.getlist("interval_ms"), 0, MAX_MS)
    if isinstance(interval_ms, str):
        return JsonResponse({"error": interval_ms}, status=400)
    return events, interval_ms


def sse_event(i: int) -> bytes:
    return f'data: {{"i": {i}}}\n\n'.encode()


def run_query(ms: int) -> object:
    """The one query, on this thread's connection from Django's pool; returns its 1.

    Sync: the async views call it through sync_to_async. Raises django.db.Error.
    """
    with connection.cursor() as cursor:
        cursor.execute(DB_QUERY, [ms / 1000.0])
        row = cursor.fetchone()
    if row is None:
        raise DatabaseError("no row")
    return row[1]


def database_failed(exc: Error) -> JsonResponse:
    """The contract's 502 for a django.db error (psycopg's own error is its cause)."""
    if isinstance(exc.__cause__, (PoolTimeout, psycopg.errors.QueryCanceled)):
        reason = "timeout"
    elif isinstance(exc, OperationalError):
        reason = "connection failed"
    else:
        reason = "query failed"
    return JsonResponse({"error": f"database unavailable: {reason}"}, status=502)


def database_not_configured() -> JsonResponse:
    return JsonResponse({"error": "database not configured"}, status=503)


def websocket_not_supported(request: HttpRequest) -> HttpResponse:
    """GET /ws/echo in the WSGI target: WSGI has no WebSocket."""
    return JsonResponse({"error": "websocket not supported"}, status=501)


def upstream_failed(reason: str) -> JsonResponse:
    return JsonResponse({"error": f"upstream unavailable: {reason}"}, status=502)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: sync, as Django calls it from both the WSGI and the ASGI handler."""
    return JsonResponse({"error": "not found"}, status=404)
