"""Every stack implements targets/CONTRACT.md: launched for real, checked by verify()."""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import ALL_TARGETS, STACKS, TARGETS_DIR
from controlled_server import ControlledServer

from harness.launch import LocalLauncher, RunningTarget
from harness.launch.postgres import Postgres
from harness.model import TargetConfig
from harness.net import free_port
from harness.verify import verify, verify_database_down, verify_upstream_down

#: Concurrent /db/query requests of QUERY_MS each in the overlap test.
CONCURRENT_QUERIES = 10
QUERY_MS = 200
#: Stacks that serve one request per worker process at a time (3 workers by default).
ONE_REQUEST_PER_WORKER = ["django-gunicorn", "flask-gunicorn"]
#: Stacks that validate POST /validate with targets/<name>/trades.py (the others: Django forms).
PYDANTIC_STACKS = [name for name in STACKS if not name.startswith("django-")]


def test_there_are_twelve_stacks_and_an_upstream(targets: dict[str, TargetConfig]) -> None:
    assert STACKS == [
        "django-daphne",
        "django-gunicorn",
        "django-gunicorn-uvicornworker",
        "django-uvicorn",
        "fastapi-granian",
        "fastapi-uvicorn",
        "flask-granian",
        "flask-gunicorn",
        "flask-gunicorn-gevent",
        "flask-gunicorn-gthread",
        "quart-hypercorn",
        "starlette-uvicorn",
    ]
    assert targets["upstream"].role == "upstream"
    assert {targets[s].interface for s in STACKS} == {"wsgi", "asgi"}


def test_every_stack_records_its_database_pool_and_websocket_support(
    targets: dict[str, TargetConfig],
) -> None:
    for name in STACKS:
        settings = targets[name].settings
        assert isinstance(settings.get("websocket"), bool), name
        # WSGI has no WebSocket; every ASGI stack here serves one.
        assert settings["websocket"] == (targets[name].interface == "asgi"), name
        assert isinstance(settings.get("db_driver"), str), name
        pool_min, pool_max = settings.get("db_pool_min"), settings.get("db_pool_max")
        assert isinstance(pool_min, int) and isinstance(pool_max, int) and 1 <= pool_min <= pool_max, name
        assert "psycopg" in targets[name].packages or "psycopg-pool" in targets[name].packages, name


def test_every_stack_records_how_it_serves_the_workload_endpoints(targets: dict[str, TargetConfig]) -> None:
    for name in STACKS:
        config = targets[name]
        settings = config.settings
        assert all(isinstance(settings.get(key), str) for key in ("fanout", "validation", "cpu")), name
        # Sync stacks keep a fan-out pool of 10 threads per worker; async ones gather.
        assert settings.get("fanout_threads") == (10 if config.interface == "wsgi" else None), name
        library = settings.get("validation_library")
        assert library == ("django.forms" if config.framework == "django" else "pydantic"), name
        if library == "pydantic":
            requirements = (TARGETS_DIR / name / "requirements.txt").read_text()
            assert "pydantic" in config.packages and "\npydantic==" in requirements, name


def test_the_pydantic_stacks_share_one_trade_model() -> None:
    models = {name: (TARGETS_DIR / name / "trades.py").read_bytes() for name in PYDANTIC_STACKS}
    assert len(set(models.values())) == 1, sorted(models)
    django_stacks = set(STACKS) - set(PYDANTIC_STACKS)
    assert not any((TARGETS_DIR / name / "trades.py").exists() for name in django_stacks)


def _launch(
    launcher: LocalLauncher, name: str, tmp_path: Path, env: dict[str, str], workers: int | None = None
) -> RunningTarget:
    config = ALL_TARGETS[name]
    return launcher.start(
        config,
        TARGETS_DIR / name,
        workers=config.default_workers if workers is None else workers,
        log_path=tmp_path / f"{name}.log",
        env=env,
    )


@pytest.fixture(scope="module", params=STACKS)
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: RunningTarget,
    postgres: Postgres,
) -> Iterator[tuple[str, RunningTarget]]:
    """Each stack, with its default workers, the upstream and the database: launched once
    for the tests that only send it requests (pytest groups them by stack)."""
    name: str = request.param
    env = {"GWBENCH_UPSTREAM_URL": upstream.url, "GWBENCH_DATABASE_URL": postgres.url}
    with LocalLauncher() as launcher:
        yield name, _launch(launcher, name, tmp_path_factory.mktemp(f"{name}-logs"), env)


@pytest.mark.usefixtures("no_leftover_processes")
def test_stack_passes_the_contract(stack: tuple[str, RunningTarget], postgres: Postgres) -> None:
    name, running = stack
    config = ALL_TARGETS[name]
    websocket = bool(config.settings["websocket"])
    report = verify(running.url, postgres=postgres, websocket=websocket, interface=config.interface)
    failures = [f"{c.name}: {c.detail}" for c in report.failures]
    assert report.passed, failures
    names = {c.name for c in report.checks}
    assert {"database query count", "WS /ws/echo", "GET /health/", "GET /cpu?n=1000"} <= names
    assert {"GET /io/fanout?ms=60&n=5&mode=threads timing", "POST /validate (valid)"} <= names
    assert len(report.checks) >= 150


@pytest.mark.usefixtures("no_leftover_processes")
@pytest.mark.parametrize("name", STACKS)
def test_stack_answers_502_quickly_when_the_upstream_or_the_database_is_down(
    name: str, tmp_path: Path
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    env = {
        "GWBENCH_UPSTREAM_URL": f"http://{closed}",
        "GWBENCH_DATABASE_URL": f"postgresql://gwbench@{closed}/gwbench",
    }
    with LocalLauncher() as launcher:
        running = _launch(launcher, name, tmp_path, env, workers=1)
        upstream_down = verify_upstream_down(running.url)
        started = time.monotonic()
        database_down = verify_database_down(running.url)
        database_down_s = time.monotonic() - started
    assert upstream_down.passed, [f"{c.name}: {c.detail}" for c in upstream_down.failures]
    assert database_down.passed, [f"{c.name}: {c.detail}" for c in database_down.failures]
    # The contract's bound: at most 2 s waiting for a pooled connection, then the answer.
    assert database_down_s < 3.0


@pytest.mark.usefixtures("no_leftover_processes")
@pytest.mark.parametrize("name", STACKS)
def test_stack_without_a_database_answers_503(name: str, tmp_path: Path, upstream: RunningTarget) -> None:
    with LocalLauncher() as launcher:
        running = _launch(launcher, name, tmp_path, {"GWBENCH_UPSTREAM_URL": upstream.url}, workers=1)
        not_configured = _get(running.url, "/db/query?ms=10")
        bad_ms = _get(running.url, "/db/query?ms=foo")
    assert (not_configured[0], json.loads(not_configured[1])) == (503, {"error": "database not configured"})
    # ms is checked first.
    assert (bad_ms[0], json.loads(bad_ms[1])) == (400, {"error": "ms must be an integer"})


def _get(base_url: str, path: str) -> tuple[int, bytes]:
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _concurrent_queries(base_url: str, count: int, ms: int) -> float:
    """Send ``count`` GET /db/query?ms=N at once; seconds until the last answered (all 200)."""
    with ThreadPoolExecutor(count) as pool:
        started = time.perf_counter()
        replies = list(pool.map(lambda _: _get(base_url, f"/db/query?ms={ms}"), range(count)))
        elapsed_s = time.perf_counter() - started
    assert all(status == 200 for status, _ in replies), replies
    return elapsed_s


@pytest.mark.usefixtures("no_leftover_processes")
def test_database_waits_overlap_except_in_one_request_workers(
    stack: tuple[str, RunningTarget], postgres: Postgres
) -> None:
    name, running = stack
    workers = ALL_TARGETS[name].default_workers
    # Warm up: every worker's pool connected, lazily created pools (Django) opened.
    _concurrent_queries(running.url, CONCURRENT_QUERIES, 20)
    postgres.reset_statistics()
    elapsed_s = _concurrent_queries(running.url, CONCURRENT_QUERIES, QUERY_MS)
    assert postgres.calls() == CONCURRENT_QUERIES
    serial_s = CONCURRENT_QUERIES * QUERY_MS / 1000
    # Queued one query at a time per worker, the 10 queries would take ceil(10 / workers)
    # rounds of 200 ms: 4 rounds (800 ms) with 3 workers, 10 (2 s) with one.
    queued_s = math.ceil(CONCURRENT_QUERIES / workers) * QUERY_MS / 1000
    if name in ONE_REQUEST_PER_WORKER:
        assert workers == 3 and elapsed_s >= 0.95 * queued_s, elapsed_s
    elif name == "flask-gunicorn-gthread":
        # 3 workers x 4 threads; the kernel may hand one worker more than 4 connections.
        assert elapsed_s < serial_s / 2, elapsed_s
    else:
        # Greenlets, event loops and Granian's threads, 20 connections per worker: one
        # round plus overheads, well under what queueing in each worker would take.
        assert elapsed_s < 3 * QUERY_MS / 1000 < queued_s, elapsed_s


def test_verify_fails_a_server_that_breaks_the_contract() -> None:
    # The controlled server answers 404 to /health and "ok" without headers elsewhere.
    with ControlledServer() as server:
        report = verify(f"http://127.0.0.1:{server.port}", check_date_changes=False)
    assert not report.passed
    names = {c.name for c in report.failures}
    assert any("health" in n for n in names), names


def test_verify_reports_a_dead_target_as_failed_checks() -> None:
    report = verify(f"http://127.0.0.1:{free_port()}", check_date_changes=False, timeout_s=1)
    assert not report.passed
    assert all(not c.passed for c in report.checks)


class _NearlyContractHandler(BaseHTTPRequestHandler):
    """Gets the v3 endpoints wrong the way a stack naturally would: FastAPI's own 422
    shape, a fan-out that says "gather" but makes its calls one by one, a CPU loop that
    hashes the digest alone instead of the 64-byte block."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        if url.path not in ("/io/fanout", "/cpu"):
            return self._json(404, {"error": "not found"})
        try:
            calls, ms = int(query["n"]), int(query.get("ms", "0"))
        except (KeyError, ValueError):
            return self._json(400, {"error": "bad request"})
        if not (1 <= calls <= 1000 and 0 <= ms <= 100):
            return self._json(400, {"error": "bad request"})
        if url.path == "/io/fanout":
            time.sleep(calls * ms / 1000)
            return self._json(200, {"calls": calls, "delayed_ms": [ms] * calls, "mode": "gather"})
        digest = hashlib.sha256(bytes(64)).digest()
        for _ in range(calls - 1):
            digest = hashlib.sha256(digest).digest()
        self._json(200, {"n": calls, "digest": digest.hex()})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self._json(422, {"detail": [{"loc": ["body", "events"], "msg": "Field required"}]})

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_verify_fails_a_fanout_validation_or_cpu_that_is_nearly_right() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NearlyContractHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        report = verify(f"http://127.0.0.1:{server.server_port}", check_date_changes=False, interface="asgi")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    failed = {c.name for c in report.failures}
    passed = {c.name for c in report.checks if c.passed}
    # Sequential calls are caught by the clock, whatever mode the answer names.
    assert "GET /io/fanout?ms=60&n=5" in passed and "GET /io/fanout?ms=60&n=5 timing" in failed
    assert "GET /cpu?n=1" in passed and "GET /cpu?n=1000" in failed
    assert {"POST /validate (no events)", "POST /validate (valid)"} <= failed
