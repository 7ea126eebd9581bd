"""FastAPI app implementing targets/CONTRACT.md with async views (ASGI).

One app for two targets (targets/fastapi-app/README.md): targets/fastapi-uvicorn serves it with
Uvicorn, targets/fastapi-granian with Granian; each target.toml's command names the server and
its [settings] record how that server is configured.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import psycopg
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from starlette.exceptions import HTTPException
from trades import TradeBatch, error_entries

MAX_MS = 10_000
MAX_EVENTS = 1_000
MAX_FANOUT_CALLS = 10
MAX_CPU_ROUNDS = 1_000_000
_INTEGER = re.compile(r"-?[0-9]+")
UPSTREAM_URL = os.environ.get("GWBENCH_UPSTREAM_URL", "http://127.0.0.1:8081")
DATABASE_URL = os.environ.get("GWBENCH_DATABASE_URL")
DB_QUERY = "SELECT pg_sleep(%s), 1"
# Connections per worker process: the event loop runs many queries at once, and
# PostgreSQL serves a few hundred connections in all; requests beyond wait for one.
DB_POOL_SIZE = 20


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One pooled session per worker process, made inside its event loop.
    # limit=0: no client-side cap on connections; the offered load bounds them.
    app.state.upstream = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    app.state.db = await open_database()
    try:
        yield
    finally:
        await app.state.upstream.close()
        if app.state.db is not None:
            await app.state.db.close()


async def open_database() -> AsyncConnectionPool | None:
    """The worker's pool, filled in the background: a database that is down does not stop
    the worker from starting (requests then answer 502). autocommit: the SELECT is the only
    statement sent (no BEGIN/COMMIT); timeout: the longest wait for a pooled connection;
    statement_timeout: the server cancels a query that hangs."""
    if DATABASE_URL is None:
        return None
    pool: AsyncConnectionPool = AsyncConnectionPool(
        DATABASE_URL,
        min_size=DB_POOL_SIZE,
        max_size=DB_POOL_SIZE,
        timeout=2.0,
        kwargs={"autocommit": True, "connect_timeout": 2, "options": "-c statement_timeout=15000"},
        open=False,
    )
    await pool.open(wait=False)
    return pool


# No interactive docs or OpenAPI schema: the contract says every other path is a 404.
# redirect_slashes=False: the contract matches paths exactly (/health/ is a 404).
app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)


def parse_int(name: str, values: list[str], low: int, high: int) -> int | str:
    """Return the parameter's value, or the contract's error reason (targets/CONTRACT.md)."""
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
    """Return the delay in ms, or the contract's error reason (targets/CONTRACT.md)."""
    return parse_int("ms", values, 0, MAX_MS)


def parse_fanout(getlist: Callable[[str], list[str]]) -> tuple[int, int] | str:
    """``(ms, calls)`` of /io/fanout, or the contract's error reason (ms, n, mode).

    ``mode=threads`` is accepted and changes nothing: the event loop overlaps the calls.
    """
    ms = parse_ms(getlist("ms"))
    if isinstance(ms, str):
        return ms
    calls = parse_int("n", getlist("n"), 1, MAX_FANOUT_CALLS)
    if isinstance(calls, str):
        return calls
    mode = getlist("mode")
    if mode and mode[0] not in ("default", "threads"):
        return "mode must be default or threads"
    return ms, calls


def sha256_chain(rounds: int) -> str:
    """The work of /cpu: from 64 zero bytes, ``rounds`` SHA-256, each digest (twice) the
    next block; the hex of the last digest."""
    block = bytes(64)
    digest = b""
    for _ in range(rounds):
        digest = hashlib.sha256(block).digest()
        block = digest + digest
    return digest.hex()


def upstream_failed(reason: str) -> JSONResponse:
    return JSONResponse({"error": f"upstream unavailable: {reason}"}, status_code=502)


async def fetch_delay(session: aiohttp.ClientSession, ms: int) -> dict[str, Any] | str:
    """GET the upstream's /delay: its JSON object, or the contract's failure reason."""
    timeout = aiohttp.ClientTimeout(total=ms / 1000 + 5.0, connect=2.0)
    try:
        async with session.get(f"{UPSTREAM_URL}/delay?ms={ms}", timeout=timeout) as reply:
            if reply.status != 200:
                return f"status {reply.status}"
            try:
                body = await reply.json(content_type=None)
            except ValueError:
                body = None
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientError:
        return "connection failed"
    if not isinstance(body, dict):
        return "invalid body"
    return body


@app.get("/health")
async def health() -> PlainTextResponse:
    return PlainTextResponse("ok")


@app.get("/json")
async def hello() -> dict[str, Any]:
    return {"message": "hello, world!"}


@app.get("/io/sleep", response_model=None)
async def io_sleep(request: Request) -> dict[str, Any] | JSONResponse:
    ms = parse_ms(request.query_params.getlist("ms"))
    if isinstance(ms, str):
        return JSONResponse({"error": ms}, status_code=400)
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}


@app.get("/io/upstream", response_model=None)
async def io_upstream(request: Request) -> dict[str, Any] | JSONResponse:
    ms = parse_ms(request.query_params.getlist("ms"))
    if isinstance(ms, str):
        return JSONResponse({"error": ms}, status_code=400)
    body = await fetch_delay(request.app.state.upstream, ms)
    if isinstance(body, str):
        return upstream_failed(body)
    return body


@app.get("/io/fanout", response_model=None)
async def io_fanout(request: Request) -> dict[str, Any] | JSONResponse:
    parsed = parse_fanout(request.query_params.getlist)
    if isinstance(parsed, str):
        return JSONResponse({"error": parsed}, status_code=400)
    ms, calls = parsed
    session: aiohttp.ClientSession = request.app.state.upstream
    # Every call runs to its end (fetch_delay returns failures); the first in call order is answered.
    bodies = await asyncio.gather(*(fetch_delay(session, ms) for _ in range(calls)))
    delayed_ms = []
    for body in bodies:
        if isinstance(body, str):
            return upstream_failed(body)
        if "delayed_ms" not in body:
            return upstream_failed("invalid body")
        delayed_ms.append(body["delayed_ms"])
    return {"calls": calls, "delayed_ms": delayed_ms, "mode": "gather"}


@app.post("/validate")
async def validate(batch: TradeBatch) -> dict[str, Any]:
    return {"valid": len(batch.events)}


@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """/validate's 400 and 422 in the contract's shape (FastAPI's own is ``{"detail": [...]}``).

    FastAPI reports a body that is not JSON as a ``json_invalid`` error and an empty one
    as the body ``missing`` (as it does the JSON text ``null``, outside the contract).
    Every ``loc`` starts with ``"body"``, which the contract leaves out.
    """
    errors = exc.errors()
    if any(
        e["type"] == "json_invalid" or (e["type"] == "missing" and tuple(e["loc"]) == ("body",))
        for e in errors
    ):
        return JSONResponse({"error": "invalid JSON"}, status_code=400)
    return JSONResponse({"errors": error_entries(list(errors), drop=1)}, status_code=422)


@app.exception_handler(400)
async def unreadable_body(request: Request, exc: HTTPException) -> JSONResponse:
    # FastAPI's answer when the body cannot be decoded at all (not UTF-8), before validation.
    return JSONResponse({"error": "invalid JSON"}, status_code=400)


@app.get("/cpu", response_model=None)
async def cpu(request: Request) -> dict[str, Any] | JSONResponse:
    rounds = parse_int("n", request.query_params.getlist("n"), 1, MAX_CPU_ROUNDS)
    if isinstance(rounds, str):
        return JSONResponse({"error": rounds}, status_code=400)
    # On the event loop, as an async view does: the control where async should not win.
    return {"n": rounds, "digest": sha256_chain(rounds)}


def database_failed(reason: str) -> JSONResponse:
    return JSONResponse({"error": f"database unavailable: {reason}"}, status_code=502)


@app.get("/db/query", response_model=None)
async def db_query(request: Request) -> dict[str, Any] | JSONResponse:
    ms = parse_ms(request.query_params.getlist("ms"))
    if isinstance(ms, str):
        return JSONResponse({"error": ms}, status_code=400)
    pool: AsyncConnectionPool | None = request.app.state.db
    if pool is None:
        return JSONResponse({"error": "database not configured"}, status_code=503)
    try:
        async with pool.connection() as conn:
            cursor = await conn.execute(DB_QUERY, (ms / 1000.0,))
            row = await cursor.fetchone()
    except (PoolTimeout, psycopg.errors.QueryCanceled):
        return database_failed("timeout")
    except psycopg.OperationalError:
        return database_failed("connection failed")
    except psycopg.Error:
        return database_failed("query failed")
    if row is None:
        return database_failed("query failed")
    return {"db_ms": ms, "value": row[1]}


async def sse_events(events: int, interval_ms: int) -> AsyncIterator[bytes]:
    """The contract's events, the first at once, then one every ``interval_ms``."""
    for i in range(events):
        if i:
            await asyncio.sleep(interval_ms / 1000)
        yield f'data: {{"i": {i}}}\n\n'.encode()


@app.get("/stream/sse", response_model=None)
async def stream_sse(request: Request) -> StreamingResponse | JSONResponse:
    events = parse_int("events", request.query_params.getlist("events"), 1, MAX_EVENTS)
    if isinstance(events, str):
        return JSONResponse({"error": events}, status_code=400)
    interval_ms = parse_int("interval_ms", request.query_params.getlist("interval_ms"), 0, MAX_MS)
    if isinstance(interval_ms, str):
        return JSONResponse({"error": interval_ms}, status_code=400)
    return StreamingResponse(
        sse_events(events, interval_ms), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@app.websocket("/ws/echo")
async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


@app.exception_handler(404)
async def not_found(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": "not found"}, status_code=404)
