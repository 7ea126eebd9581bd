"""Locust's statistics and the plugin's report mapped into our :class:`LoadResult`.

Locust writes its statistics per request name (``--json-file``: :class:`StatsEntry`), and
gwbench's plugin (``locust_plugin.py``) reports the measured window, the generator's CPU time
and Locust's failures; :func:`to_load_result` maps the two (the Locust driver,
:mod:`harness.load.locust`, runs Locust and reads them).

How Locust 2.x counts (``locust/stats.py``), and what we make of it:

- ``num_requests``: requests that finished, successes and failures; a user
  stopped at the end of the run drops its request in flight uncounted.
  ``num_failures``: those Locust marked failed: status >= 400 (FastHttpUser's
  ``LocustBadStatusCode(code=500)``), a connection or protocol error, a
  timeout, or the locustfile's own ``response.failure(...)``.
- failures by text: Locust keeps each distinct failure's text (``repr`` of
  the exception) with its count. :func:`error_kind` sorts them into our
  kinds: ``status`` with the code, ``timeout`` (FastHttpUser cannot tell a
  connect timeout from a read timeout: both are ``timed out``), ``connect``
  (refused, unresolvable, unreachable), and ``read`` for the rest: a
  connection closed or reset, an unparsable response, and a locustfile's own
  failures (a body that did not check out).
- latency: FastHttpUser times each request from just before sending it (a
  new connection's connect included, as the native driver does) to reading
  the whole body, in float ms, and Locust keeps the times in a dict
  ``{rounded_ms: count}`` (``response_times``), rounded to whole ms below
  100 ms, to 10 ms below 1 s, to 100 ms below 10 s and to whole s above
  (``bucket_response_time``). The HdrHistogram (µs, as the native driver's)
  is rebuilt from that dict, each bucket kept within the request name's exact
  min and max (Locust keeps those unrounded), so min and max are exact and
  every percentile in between is approximate: a p50 of 3 ms means 2.5-3.5 ms.
  Locust times failures too; the locustfiles that ship here record a failure
  without a time (``response_time = None``, Locust's "no response time"), so
  their histograms hold successes only, as the native driver's do. A user's
  locustfile that times its failures puts them in the histogram: then its
  count is ``ok`` plus those failures (checked against Locust's own
  ``num_requests - num_none_requests``).

Mapped into :class:`LoadResult`: ``ok = num_requests - num_failures``;
``errors`` and ``error_statuses`` as above; ``duration_s`` and
``generator_cpu_s`` (user + system, every Locust process: the master or the
only one, and each worker as it reported to the master) over the window the
plugin measured; ``connections_opened`` and ``connections_peak`` = the most
users (FastHttpUser keeps one keep-alive connection per user and does not
report reconnections); ``processes``: the processes that ran users (1, or the
workers). Locust is closed-model only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypedDict

from harness import histogram
from harness.load.result import LoadResult

if TYPE_CHECKING:
    from harness.load.locust_plugin import Report


class LocustError(Exception):
    """Locust is missing, failed, or reported numbers that do not add up; the message says which."""


_STATUS = re.compile(r"LocustBadStatusCode\(code=(\d+)\)|HTTPError\('(\d{3}) ")
_TIMEOUT = re.compile(r"timed out|timeout", re.IGNORECASE)
_CONNECT = re.compile(
    r"ConnectionRefused|Connection refused|NewConnectionError|gaierror|not known|No route to host|"
    r"Network is unreachable",
    re.IGNORECASE,
)


def error_kind(error: str) -> tuple[str, int | None]:
    """Our error kind for one of Locust's failure texts, and the HTTP status for ``status``.

    >>> error_kind("LocustBadStatusCode(code=503)")
    ('status', 503)
    >>> error_kind("RetriesExceeded('http://127.0.0.1:8000/x', 0, original=timed out)")
    ('timeout', None)
    >>> error_kind("ConnectionRefusedError(111, 'Connection refused')")
    ('connect', None)
    >>> error_kind("HTTPConnectionClosed('connection closed.')")
    ('read', None)
    """
    if match := _STATUS.search(error):
        return "status", int(match.group(1) or match.group(2))
    if _TIMEOUT.search(error):
        return "timeout", None
    if _CONNECT.search(error):
        return "connect", None
    return "read", None


class StatsEntry(TypedDict):
    """One request name in Locust's ``--json-file`` (``StatsEntryDict``); times in ms, keys as text."""

    name: str
    method: str
    num_requests: int
    num_none_requests: int
    num_failures: int
    min_response_time: float | None
    max_response_time: float
    response_times: dict[str, int]


def latency_distribution(entries: Iterable[StatsEntry]) -> list[tuple[int, int]]:
    """``(latency_us, count)`` pairs of Locust's rounded response times, each within its entry's min and max.

    Raises LocustError when an entry's times do not add up to its timed requests.
    """
    counts: Counter[int] = Counter()
    for entry in entries:
        timed = entry["num_requests"] - entry["num_none_requests"]
        if sum(entry["response_times"].values()) != timed:
            raise LocustError(
                f"Locust's response times for {entry['method']} {entry['name']} hold "
                f"{sum(entry['response_times'].values())} values for {timed} timed requests"
            )
        low = entry["min_response_time"]
        high = entry["max_response_time"]
        for key, count in entry["response_times"].items():
            ms = float(key) if low is None else min(max(float(key), low), high)
            counts[round(ms * 1000)] += count
    return sorted(counts.items())


def to_load_result(entries: Sequence[StatsEntry], report: Report) -> LoadResult:
    """Map Locust's statistics and the plugin's report into our LoadResult (see the module docstring).

    Raises LocustError when the window never opened or closed, the locustfile
    raised, a worker's last report is missing, or Locust's counts disagree.
    """
    if report["format"] != 1:
        raise LocustError(f"unknown gwbench Locust report format {report['format']!r} (expected 1)")
    start, end = report["window_start_ns"], report["window_end_ns"]
    if start is None or end is None:
        raise LocustError("the Locust run ended before its measured window opened and closed")
    if report["exceptions"]:
        raise LocustError(f"the locustfile raised: {'; '.join(report['exceptions'][:3])}")
    late = sorted(worker for worker, cpu in report["workers"].items() if not cpu["final"])
    if late:
        raise LocustError(f"the last report of Locust worker(s) {', '.join(late)} did not reach the master")
    errors = {"status": 0, "connect": 0, "read": 0, "timeout": 0}
    statuses: Counter[int] = Counter()
    for row in report["errors"]:
        kind, status = error_kind(row["error"])
        errors[kind] += row["occurrences"]
        if status is not None:
            statuses[status] += row["occurrences"]
    requests = sum(entry["num_requests"] for entry in entries)
    failures = sum(entry["num_failures"] for entry in entries)
    if failures != sum(errors.values()):
        raise LocustError(f"Locust counted {failures} failures but listed {sum(errors.values())}")
    users = report["peak_users"]
    return LoadResult(
        duration_s=(end - start) / 1e9,
        ok=requests - failures,
        errors=errors,
        error_statuses=dict(sorted(statuses.items())),
        connections_opened=users,
        generator_cpu_s=report["cpu_s"] + sum(cpu["cpu_s"] for cpu in report["workers"].values()),
        histogram=histogram.encode_counts(latency_distribution(entries)),
        model="closed",
        connections_peak=users,
        processes=max(1, len(report["workers"])),
    )
