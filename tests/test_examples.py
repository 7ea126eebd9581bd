"""examples/: the orders service in Flask and its FastAPI port, each tested on its own, then benchmarked.

Each app runs under a real server on 127.0.0.1 (Gunicorn's sync worker, Uvicorn), launched
as ``--app`` launches it, with a throw-away PostgreSQL and the upstream standing in for
the pricing service: both answer the same JSON for a customer, and 400 for a bad one. Then
the README's command, cut to one server a side and smoke durations: one run benchmarks
both, PostgreSQL started by the scenario's ``database = true``, and the path table has
the Flask app on Gunicorn to its port on Uvicorn.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, TARGETS_DIR

from harness.launch import LocalLauncher, RunningTarget
from harness.launch.postgres import Postgres
from harness.model.appservers import app_targets, parse_app
from harness.results import load_run

FLASK = "flask=wsgi:examples/orders-flask/app.py:app"
FASTAPI = "fastapi=asgi:examples/orders-fastapi/app.py:app"
QUERY_MS, PRICING_MS = 5, 10
# The customer's orders, as examples/*/app.py make them up in their query.
ORDERS = [{"id": 1, "amount": 9.5}, {"id": 2, "amount": 20.0}, {"id": 3, "amount": 4.25}]


@pytest.fixture(scope="module")
def apps(
    postgres: Postgres, upstream: RunningTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Both examples running (Flask on Gunicorn sync, FastAPI on Uvicorn): their base URLs by name."""
    logs = tmp_path_factory.mktemp("example-logs")
    env = {
        "GWBENCH_DATABASE_URL": postgres.url,
        "GWBENCH_UPSTREAM_URL": upstream.url,
        "ORDERS_QUERY_MS": str(QUERY_MS),
        "ORDERS_PRICING_MS": str(PRICING_MS),
    }
    serve = TARGETS_DIR / "django-daphne" / "serve.py"
    with LocalLauncher() as launcher:
        urls = {}
        for raw, server in ((FLASK, "gunicorn"), (FASTAPI, "uvicorn")):
            app = parse_app(raw, cwd=REPO)
            config = app_targets(app, ready_path="/health", daphne_serve=serve)[f"{app.name}-{server}"]
            running = launcher.start(
                config, REPO, workers=1, log_path=logs / f"{config.name}.log", env=env, ready_timeout_s=60
            )
            urls[app.name] = running.url
        yield urls


def get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("name", ["flask", "fastapi"])
def test_an_example_answers_a_customers_orders_from_postgresql_priced_by_the_upstream(
    apps: dict[str, str], name: str
) -> None:
    status, body = get(f"{apps[name]}/orders/recent?customer=7")
    assert status == 200, body
    assert body == {"customer": 7, "orders": ORDERS, "total": 33.75, "priced_in_ms": PRICING_MS}


@pytest.mark.parametrize("name", ["flask", "fastapi"])
@pytest.mark.parametrize("customer", ["0", "x", ""])
def test_an_example_refuses_a_customer_that_is_not_a_positive_integer(
    apps: dict[str, str], name: str, customer: str
) -> None:
    status, body = get(f"{apps[name]}/orders/recent?customer={customer}")
    assert status == 400
    assert body == {"error": "customer must be a positive integer"}


@pytest.mark.usefixtures("no_leftover_processes")
def test_the_readme_command_benchmarks_both_examples_with_their_database_and_a_path(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "harness", "run", "examples/orders.toml", "--app", FLASK, "--app", FASTAPI]
    argv += ["--targets", "flask-gunicorn,fastapi-uvicorn", "--quick", "--quick-factor", "0.1"]
    argv += ["--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    manifest, measurements = load_run(run_dir)
    assert manifest.database is not None  # PostgreSQL ran for the apps
    assert set(manifest.targets) == {"flask-gunicorn", "flask-gunicorn@tuned", "fastapi-uvicorn"}
    assert all(m.status == "ok" and m.requests > 0 and m.errors.total == 0 for m in measurements), [
        (m.cell_id, m.failure_reason, m.errors) for m in measurements
    ]
    # One path: the tuned Gunicorn is in its row (tuned and as configured), on no path of its own.
    paths = re.findall(r"^(\S+ -> \S+) on ", done.stdout, re.MULTILINE)
    assert paths == ["flask-gunicorn -> fastapi-uvicorn"], done.stdout[-3000:]
    assert "tuned within the limits" in done.stdout
    page = (tmp_path / "reports" / run_dir.name / "index.html").read_text()
    assert "flask-gunicorn -&gt; fastapi-uvicorn" in page
