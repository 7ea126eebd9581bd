"""Check a running target against the endpoint contract (``targets/CONTRACT.md``).

Requests go only to the given base URL, over plain HTTP/1.1 with the standard
library's ``http.client`` (one connection per request), so the raw status line and
headers are what the server sent; the WebSocket checks use the ``websockets``
library's sync client. Nothing here raises for a misbehaving target: every problem,
a refused connection included, becomes a failed :class:`Check`.

Example::

    with Postgres(log_path=...) as pg:
        ...  # start the target with GWBENCH_DATABASE_URL=pg.url
        report = verify("http://127.0.0.1:8000", postgres=pg, websocket=True, interface="asgi")
    for check in report.failures:
        print(check.name, check.detail)
"""

from harness.verify.contract import (
    CONTRACT_VERSION,
    QueryCounter,
    verify,
    verify_database_down,
    verify_upstream_down,
)
from harness.verify.exchange import Check, VerificationReport

__all__ = [
    "CONTRACT_VERSION",
    "Check",
    "QueryCounter",
    "VerificationReport",
    "verify",
    "verify_database_down",
    "verify_upstream_down",
]
