"""A user journey for gwbench's Locust driver: health check, JSON, an upstream call, a validation.

Each user walks the same path again and again, without pause: ``GET /health``,
``GET /json``, ``GET /io/upstream?ms=20`` (the target waits 20 ms on the
upstream service), then ``POST /validate`` with a small batch of trade
events, a step skipped when the target has no ``/validate`` (it answers 404
or 405 to a probe sent once per Locust process when the test starts, outside
Locust's statistics). The users come in four equal steps during the warm-up
and then hold at ``--users`` (:class:`StepThenHold`), so the measured window
sees the plateau.

Run by the harness: ``LocustLoad(locustfile=Path("scenarios/locust/journey.py"),
users=..., ...)``. By hand, with 5-second steps up to 40 users::

    locust -f scenarios/locust/journey.py --headless -H http://127.0.0.1:8000 -u 40 -t 60s

A failure is recorded without a time (``response_time = None``), so Locust's
response times, and gwbench's histogram, hold successes only.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from locust import FastHttpUser, LoadTestShape, SequentialTaskSet, constant, events, task
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment

UPSTREAM_MS = 20
STEPS = 4
STEP_S_BY_HAND = 5.0
"""Step length when no gwbench warm-up spreads the steps (a run by hand)."""

TRADES = {
    "events": [
        {"id": f"t-{n}", "symbol": "ACME", "side": "buy" if n % 2 else "sell", "quantity": 100 + n,
         "price": 12.5 + n / 100, "ts": "2026-01-02T03:04:05Z"}
        for n in range(10)
    ]
}  # fmt: skip
"""The validation step's body: a valid batch of 10 trade events (targets/CONTRACT.md, POST /validate)."""

validation = {"supported": True}
"""Whether this process's target answers /validate; decided by :func:`probe_validation`."""


@events.test_start.add_listener
def probe_validation(environment: Environment, **_: Any) -> None:
    """One POST /validate outside Locust's statistics: a 404 or 405 means the target has none."""
    if environment.host is None or environment.parsed_options is None:
        return
    if getattr(environment.parsed_options, "master", False):
        return  # a master runs no users
    request = urllib.request.Request(
        f"{environment.host}/validate",
        data=json.dumps(TRADES).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5):
            validation["supported"] = True
    except urllib.error.HTTPError as error:
        validation["supported"] = error.code not in (404, 405)
    except OSError as error:
        logging.warning("journey: /validate probe failed (%s); the step stays in", error)
    logging.info("journey: /validate %s", "in" if validation["supported"] else "skipped (404/405)")


def untimed_if_failed(response: ResponseContextManager) -> None:
    """Leave a failed request's time out of Locust's response times (Locust counts it as untimed)."""
    if response.request_meta["exception"] is not None:
        response.request_meta["response_time"] = None


class Journey(SequentialTaskSet):
    def get(self, path: str, name: str | None = None) -> None:
        with self.client.get(path, name=name, catch_response=True) as response:
            untimed_if_failed(response)

    @task
    def health(self) -> None:
        self.get("/health")

    @task
    def hello_json(self) -> None:
        self.get("/json")

    @task
    def upstream(self) -> None:
        self.get(f"/io/upstream?ms={UPSTREAM_MS}", name="/io/upstream?ms=[ms]")

    @task
    def validate(self) -> None:
        if validation["supported"]:
            with self.client.post("/validate", json=TRADES, catch_response=True) as response:
                untimed_if_failed(response)


class JourneyUser(FastHttpUser):
    tasks = [Journey]  # noqa: RUF012  (Locust reads its own class attributes)
    wait_time = constant(0)
    connection_timeout = 10.0
    network_timeout = 10.0
    default_headers = {"User-Agent": "gwbench"}  # noqa: RUF012


class StepThenHold(LoadTestShape):
    """``STEPS`` equal steps up to ``--users`` (20 if not given) over gwbench's warm-up, then hold.

    The run ends when gwbench's window has lasted its duration or at Locust's ``--run-time``.
    """

    use_common_options = True  # it reads --users

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        peak = int(getattr(options, "num_users", None) or 20)
        warmup_s = float(getattr(options, "gwbench_warmup", 0.0) or 0.0)
        step_s = warmup_s / STEPS if warmup_s > 0 else STEP_S_BY_HAND
        step = min(STEPS, int(self.get_run_time() // step_s) + 1)
        users = max(1, round(peak * step / STEPS))
        return users, float(users)
