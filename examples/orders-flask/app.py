"""An orders service in Flask (WSGI): the app a team runs today, before it is ported to ASGI.

``GET /orders/recent?customer=N`` reads the customer's recent orders from PostgreSQL and
asks a pricing service (an HTTP upstream) for their total, then answers both as JSON:
``{"customer": N, "orders": [{"id": 1, "amount": 9.5}, ...], "total": 33.75, "priced_in_ms": 30}``.
A customer that is not a positive integer is a 400. ``GET /health`` answers ``ok``.

Configuration, from the environment (gwbench sets both when it launches the app):
``GWBENCH_DATABASE_URL`` (the PostgreSQL URL) and ``GWBENCH_UPSTREAM_URL`` (the pricing
service: its ``/delay?ms=M`` answers after M ms). ``ORDERS_QUERY_MS`` (default 20) and
``ORDERS_PRICING_MS`` (default 30) stand for how long the real query and the real pricing
call take: the query sleeps in PostgreSQL (``pg_sleep``), the call waits in the upstream.

Each worker process opens its own connection pool and HTTP pool when it imports the app
(no preload), so no socket crosses a fork. Ten connections each: a sync worker uses one,
a gthread worker one per thread, a gevent worker's requests wait for one.
"""

from __future__ import annotations

import json
import os
from typing import Any

import urllib3
from flask import Flask, request
from psycopg_pool import ConnectionPool

DATABASE_URL = os.environ.get("GWBENCH_DATABASE_URL", "postgresql://127.0.0.1:5432/orders")
UPSTREAM_URL = os.environ.get("GWBENCH_UPSTREAM_URL", "http://127.0.0.1:8081")
QUERY_MS = int(os.environ.get("ORDERS_QUERY_MS", "20"))
PRICING_MS = int(os.environ.get("ORDERS_PRICING_MS", "30"))

# The customer's orders, made up in the query itself: the example needs no schema.
RECENT_ORDERS = """
SELECT o.id, o.amount FROM (VALUES (1, 9.5), (2, 20.0), (3, 4.25)) AS o(id, amount), pg_sleep(%s)
WHERE %s > 0 ORDER BY o.id
"""

# Opened in the background at import: a database that is down does not stop a worker starting.
db = ConnectionPool(DATABASE_URL, min_size=1, max_size=10, timeout=5.0, kwargs={"autocommit": True})
http = urllib3.PoolManager(retries=False, maxsize=10, timeout=urllib3.Timeout(total=5.0))
app = Flask(__name__)


@app.get("/health")
def health() -> tuple[str, int]:
    return "ok", 200


@app.get("/orders/recent")
def recent_orders() -> tuple[dict[str, Any], int]:
    customer = request.args.get("customer", "")
    if not customer.isdigit() or int(customer) < 1:
        return {"error": "customer must be a positive integer"}, 400
    with db.connection() as conn:
        rows = conn.execute(RECENT_ORDERS, (QUERY_MS / 1000, int(customer))).fetchall()
    orders = [{"id": row[0], "amount": float(row[1])} for row in rows]
    reply = http.request("GET", f"{UPSTREAM_URL}/delay?ms={PRICING_MS}")
    priced = json.loads(reply.data)
    total = sum(order["amount"] for order in orders)
    answer = {"customer": int(customer), "orders": orders, "total": total}
    return {**answer, "priced_in_ms": priced["delayed_ms"]}, 200
