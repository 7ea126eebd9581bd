"""The requests a driver sends: one GET, or a weighted mix of GETs and POSTs with bodies.

Every request is built into bytes once, before the load starts; during the load
a :class:`Picker` hands out the next request's bytes, choosing by weight with
a seeded generator, so the hot path only indexes a list.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass

Pick = tuple[bytes, int, int]
"""A request's bytes and the range of statuses ``[from, to)`` that count as its success."""


@dataclass(frozen=True)
class HttpRequest:
    """One kind of request in a load: ``method`` and ``path`` (with query), an optional body.

    ``weight`` (>= 1) is its share of a mix. ``body`` is sent with
    ``Content-Type: content_type`` and its ``Content-Length``. ``status`` is the
    one HTTP status that counts as success for it (100-599); None: any 2xx.
    Every other status is a ``status`` error.
    """

    path: str
    method: str = "GET"
    body: bytes = b""
    content_type: str = "application/json"
    weight: int = 1
    status: int | None = None

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with '/', got {self.path!r}")
        if self.method not in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            raise ValueError(f"method must be GET, POST, PUT, DELETE or PATCH, got {self.method!r}")
        if self.weight < 1:
            raise ValueError(f"weight must be >= 1, got {self.weight}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status from 100 to 599, got {self.status}")

    @property
    def ok_statuses(self) -> tuple[int, int]:
        """The statuses that count as success, as a range ``[from, to)``: any 2xx, or ``status``."""
        return (200, 300) if self.status is None else (self.status, self.status + 1)

    def encode(self, host: str, port: int) -> bytes:
        """The request as HTTP/1.1 bytes (keep-alive), with the drivers' usual headers."""
        head = (
            f"{self.method} {self.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "User-Agent: gwbench\r\nAccept: */*\r\n"
        )
        if self.body or self.method != "GET":
            head += f"Content-Type: {self.content_type}\r\nContent-Length: {len(self.body)}\r\n"
        return head.encode("ascii") + b"\r\n" + self.body


class Picker:
    """Hands out the bytes of the next request to send, by weight.

    With one kind of request, always the same bytes. With several, request
    ``i`` comes with probability ``weight_i / sum(weights)``, drawn from
    ``random.Random(seed)`` so a run can be replayed.
    """

    def __init__(
        self, requests: Sequence[HttpRequest], host: str, port: int, seed: int | None = None
    ) -> None:
        if not requests:
            raise ValueError("no requests to send")
        self.encoded = [request.encode(host, port) for request in requests]
        self.picks = [
            (encoded, *request.ok_statuses) for encoded, request in zip(self.encoded, requests, strict=True)
        ]
        self.cumulative = list(itertools.accumulate(request.weight for request in requests))
        self._random = random.Random(seed).random

    def next(self) -> bytes:
        """The bytes of the next request."""
        if len(self.encoded) == 1:
            return self.encoded[0]
        total = self.cumulative[-1]
        return self.encoded[bisect.bisect_right(self.cumulative, self._random() * total)]

    def pick(self) -> Pick:
        """The next request: its bytes and the statuses that count as its success, ``[from, to)``.

        Draws as :meth:`next` does; the tuples are built once, so picking allocates nothing.
        """
        if len(self.picks) == 1:
            return self.picks[0]
        total = self.cumulative[-1]
        return self.picks[bisect.bisect_right(self.cumulative, self._random() * total)]
