"""Pieces of targets/CONTRACT.md shared by the sync and the async views."""

from __future__ import annotations

import os
import re

from django.http import HttpRequest, HttpResponse, JsonResponse

MAX_MS = 10_000
_INTEGER = re.compile(r"-?[0-9]+")
UPSTREAM_URL = os.environ.get("GWBENCH_UPSTREAM_URL", "http://127.0.0.1:8081")


def parse_ms(values: list[str]) -> int | str:
    """Return the delay in ms, or the contract's error reason."""
    if not values:
        return "ms is required"
    raw = values[0]
    if not _INTEGER.fullmatch(raw):
        return "ms must be an integer"
    digits = raw.lstrip("-").lstrip("0") or "0"
    if (raw.startswith("-") and digits != "0") or len(digits) > 5 or int(digits) > MAX_MS:
        return f"ms must be between 0 and {MAX_MS}"
    return int(digits)


def upstream_failed(reason: str) -> JsonResponse:
    return JsonResponse({"error": f"upstream unavailable: {reason}"}, status=502)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: sync, as Django calls it from both the WSGI and the ASGI handler."""
    return JsonResponse({"error": "not found"}, status=404)
