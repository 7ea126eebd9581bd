"""The orders service of examples/orders-flask ported to FastAPI (ASGI): the same endpoint and answers.

``GET /orders/recent?customer=N`` awaits the same PostgreSQL query (psycopg's async pool)
and the same pricing call (aiohttp), so the event loop serves other requests meanwhile;
``GET /health`` answers ``ok``. Configuration as the Flask app: ``GWBENCH_DATABASE_URL``,
``GWBENCH_UPSTREAM_URL``, ``ORDERS_QUERY_MS`` and ``ORDERS_PRICING_MS``.

The pools are opened once per worker process (:class:`Resources`); one worker serves
many requests at once, so its pool holds up to 20 connections.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, PlainTextResponse
from psycopg_pool import AsyncConnectionPool

DATABASE_URL = os.environ.get("GWBENCH_DATABASE_URL", "postgresql://127.0.0.1:5432/orders")
UPSTREAM_URL = os.environ.get("GWBENCH_UPSTREAM_URL", "http://127.0.0.1:8081")
QUERY_MS = int(os.environ.get("ORDERS_QUERY_MS", "20"))
PRICING_MS = int(os.environ.get("ORDERS_PRICING_MS", "30"))

RECENT_ORDERS = """
SELECT o.id, o.amount FROM (VALUES (1, 9.5), (2, 20.0), (3, 4.25)) AS o(id, amount), pg_sleep(%s)
WHERE %s > 0 ORDER BY o.id
"""


class Resources:
    """The worker's database pool and HTTP session, opened once per worker process.

    By the lifespan where the server runs it (Uvicorn, Hypercorn, Granian), else by the
    first request (Daphne runs no lifespan).
    """

    def __init__(self) -> None:
        self.db: AsyncConnectionPool | None = None
        self.http: aiohttp.ClientSession | None = None
        self.lock = asyncio.Lock()

    async def open(self) -> tuple[AsyncConnectionPool, aiohttp.ClientSession]:
        async with self.lock:
            if self.db is None or self.http is None:
                settings = {"autocommit": True}
                self.db = AsyncConnectionPool(
                    DATABASE_URL, min_size=1, max_size=20, timeout=5.0, kwargs=settings, open=False
                )
                await self.db.open(wait=False)
                self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0))
            return self.db, self.http

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.db is not None:
            await self.db.close()


resources = Resources()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await resources.open()
    try:
        yield
    finally:
        await resources.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health", response_class=PlainTextResponse)
async def health() -> str:
    return "ok"


@app.get("/orders/recent", response_model=None)
async def recent_orders(customer: str = Query("")) -> dict[str, Any] | JSONResponse:
    if not customer.isdigit() or int(customer) < 1:
        return JSONResponse({"error": "customer must be a positive integer"}, status_code=400)
    db, http = await resources.open()
    async with db.connection() as conn:
        cursor = await conn.execute(RECENT_ORDERS, (QUERY_MS / 1000, int(customer)))
        rows = await cursor.fetchall()
    orders = [{"id": row[0], "amount": float(row[1])} for row in rows]
    async with http.get(f"{UPSTREAM_URL}/delay?ms={PRICING_MS}") as reply:
        priced = await reply.json()
    total = sum(order["amount"] for order in orders)
    return {"customer": int(customer), "orders": orders, "total": total, "priced_in_ms": priced["delayed_ms"]}
