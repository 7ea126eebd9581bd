"""Pieces of targets/CONTRACT.md shared by the sync and the async views."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from typing import Any

import psycopg
from django.db import DatabaseError, Error, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from psycopg_pool import PoolTimeout

MAX_MS = 10_000
MAX_EVENTS = 1_000
MAX_FANOUT_CALLS = 10
MAX_CPU_ROUNDS = 1_000_000
# Threads of the sync views' fan-out pool (/io/fanout?mode=threads), per worker process.
FANOUT_THREADS = 10
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


def parse_fanout(getlist: Callable[[str], list[str]]) -> tuple[int, int, bool] | str:
    """``(ms, calls, threads)`` of /io/fanout, or the contract's error reason (ms, n, mode)."""
    ms = parse_ms(getlist("ms"))
    if isinstance(ms, str):
        return ms
    calls = parse_int("n", getlist("n"), 1, MAX_FANOUT_CALLS)
    if isinstance(calls, str):
        return calls
    mode = getlist("mode")
    if mode and mode[0] not in ("default", "threads"):
        return "mode must be default or threads"
    return ms, calls, mode[:1] == ["threads"]


def fanout_answer(bodies: list[dict[str, Any] | str], mode: str) -> JsonResponse:
    """200 with every call's ``delayed_ms`` in call order, or the first failure's 502.

    ``bodies``: each call's JSON object, or its failure reason.
    """
    delayed_ms = []
    for body in bodies:
        if isinstance(body, str):
            return upstream_failed(body)
        if "delayed_ms" not in body:
            return upstream_failed("invalid body")
        delayed_ms.append(body["delayed_ms"])
    return JsonResponse({"calls": len(delayed_ms), "delayed_ms": delayed_ms, "mode": mode})


def parse_cpu(request: HttpRequest) -> int | JsonResponse:
    """``n`` of /cpu, or the contract's 400."""
    rounds = parse_int("n", request.GET.getlist("n"), 1, MAX_CPU_ROUNDS)
    if isinstance(rounds, str):
        return JsonResponse({"error": rounds}, status=400)
    return rounds


def sha256_chain(rounds: int) -> str:
    """The work of /cpu: from 64 zero bytes, ``rounds`` SHA-256, each digest (twice) the
    next block; the hex of the last digest."""
    block = bytes(64)
    digest = b""
    for _ in range(rounds):
        digest = hashlib.sha256(block).digest()
        block = digest + digest
    return digest.hex()


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


def parse_json_body(request: HttpRequest) -> object | JsonResponse:
    """The request's body parsed as JSON, or the contract's 400 (not JSON, or not UTF-8)."""
    try:
        return json.loads(request.body)
    except ValueError:
        return JsonResponse({"error": "invalid JSON"}, status=400)


def websocket_not_supported(request: HttpRequest) -> HttpResponse:
    """GET /ws/echo in the WSGI target: WSGI has no WebSocket."""
    return JsonResponse({"error": "websocket not supported"}, status=501)


def upstream_failed(reason: str) -> JsonResponse:
    return JsonResponse({"error": f"upstream unavailable: {reason}"}, status=502)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: sync, as Django calls it from both the WSGI and the ASGI handler."""
    return JsonResponse({"error": "not found"}, status=404)
