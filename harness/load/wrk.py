"""The cross-check driver: Debian's ``wrk`` (4.x) drives the closed model, and its numbers map to ours.

wrk runs as its own process, pinned to the generator CPUs, with the Lua script
``wrk_report.lua`` beside this file: its ``done()`` hook writes the run's totals
and wrk's whole latency distribution as JSON, from which an HdrHistogram is
rebuilt in the native driver's encoding (microseconds, 3 significant digits).
The script defines no ``response()`` hook: that hook makes wrk parse every
response's headers and body in Lua, which costs far more CPU than the request
itself, so HTTP status codes are not available and ``error_statuses`` stays
empty.

How wrk 4.1 counts (src/wrk.c, src/stats.c), and what we make of it:

- ``requests``: responses received. A status above 399 is also a ``status``
  error; a response that took longer than ``--timeout`` is also a ``timeout``
  error and its latency is not recorded. A request that never gets a response
  is not counted at all: wrk 4.1 has no timer per request, so a server that
  hangs shows up as missing throughput, not as timeouts (the native driver
  counts those as ``timeout``).
- ``read`` / ``write`` errors (a socket error or an unparsable response) and
  ``connect`` errors are not responses and are not in ``requests``. wrk 4.1
  does not check the outcome of a non-blocking connect, so a refused
  reconnection (the server went away) shows up as a ``read`` error; and it
  exits at once when the target refuses its first, blocking, connection (a
  WrkError here, where the native driver would count ``connect`` errors).
- latency: every response within the timeout, *error responses included*
  (wrk does not keep them apart), measured from the first write of the
  request. At the end of the run wrk adds synthetic latencies to its table to
  make up for coordinated omission (``stats_correct``: every value at least
  twice the mean interval between one connection's requests also adds values
  one, two, ... intervals below it), and its own percentiles, mean and stdev
  include them. That correction is exact arithmetic, so it is undone here: the
  histogram holds the latencies wrk measured, the same quantity the native
  closed-model driver records. A check that the result has exactly
  ``requests - timeout`` latencies (and that wrk's own percentiles are read
  back from its distribution) raises WrkError if a different wrk counts
  otherwise.

Mapped into :class:`LoadResult`:

- ``ok = requests - status - timeout`` (a response both late and >399 is
  subtracted twice; wrk cannot tell them apart);
- ``errors``: ``status``, ``timeout``, ``connect`` as wrk counts them, and
  ``read`` = wrk's ``read + write``;
- ``histogram``: as above, so its count is ``ok`` plus the error responses
  that arrived within the timeout;
- ``connections_opened = concurrency``: wrk does not report reconnections
  (after ``Connection: close`` or an error it reconnects silently), so this
  is exact only against a keep-alive server without errors;
- ``generator_cpu_s``: the wrk process's user + system CPU time (``wait4``),
  which also includes its start-up and the ``done()`` hook;
- ``duration_s``: wrk's own measured duration; ``processes``: wrk's threads
  (one event loop each), at most one per CPU in ``cpus``.

wrk takes whole seconds only, so the warm-up, the measured duration and the
timeout are rounded up to whole seconds (at least 1; a warm-up of 0 skips the
warm-up run). ``load.max_requests`` is not supported by wrk 4.1 and is ignored.
"""

from __future__ import annotations

import json
import math
import os
import resource
import select
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from harness import histogram
from harness.load.native import ClosedLoad, ensure_loopback
from harness.load.result import LoadResult
from harness.net import http_origin
from harness.types import WindowCallback

REPORT_SCRIPT = Path(__file__).with_name("wrk_report.lua")
REPORT_ENV = "GWBENCH_WRK_REPORT"
INSTALL_HINT = "install it with: apt-get install wrk"
_EXIT_GRACE_S = 30.0
_POLL_S = 0.2


class WrkError(Exception):
    """wrk is missing, failed, or reported numbers that do not add up; the message says which."""


_ERROR_KINDS = ("connect", "read", "write", "status", "timeout")
_LATENCY_KEYS = ("min", "max", "mean", "stdev", "p50", "p90", "p99", "p999")


class _ReportJson(TypedDict):
    """What ``wrk_report.lua`` writes (format 1); latencies in microseconds."""

    format: int
    duration_us: int
    requests: int
    bytes: int
    errors: dict[str, int]  # the five _ERROR_KINDS
    latency_us: dict[str, float] | None  # the _LATENCY_KEYS
    distribution_us: list[list[int]]
    distribution_source: str


@dataclass(frozen=True)
class WrkReport:
    """One wrk run as its ``done()`` hook saw it.

    ``distribution_us`` is wrk's latency table as ``(latency_us, count)`` pairs
    in ascending order, *with* wrk's coordinated-omission correction;
    ``latency_us`` holds wrk's own min, max, mean, stdev and p50/p90/p99/p999 of
    that table (None when nothing was recorded). ``distribution_source`` is
    ``"ffi"`` (the table read directly) or ``"api"`` (through ``latency(i)``).
    """

    duration_us: int
    requests: int
    bytes: int
    errors: dict[str, int]
    latency_us: dict[str, float] | None
    distribution_us: tuple[tuple[int, int], ...]
    distribution_source: str

    @classmethod
    def from_json(cls, text: str) -> WrkReport:
        raw: _ReportJson = json.loads(text)
        if raw.get("format") != 1:
            raise WrkError(f"unknown wrk report format {raw.get('format')!r} (expected 1)")
        latency = raw["latency_us"]
        return cls(
            duration_us=int(raw["duration_us"]),
            requests=int(raw["requests"]),
            bytes=int(raw["bytes"]),
            errors={kind: int(raw["errors"][kind]) for kind in _ERROR_KINDS},
            latency_us=None if latency is None else {key: float(latency[key]) for key in _LATENCY_KEYS},
            distribution_us=tuple((int(value), int(count)) for value, count in raw["distribution_us"]),
            distribution_source=raw["distribution_source"],
        )

    def correction_interval_us(self, connections: int) -> int:
        """The interval wrk's ``stats_correct`` used: duration / (requests per connection), in µs; 0: none."""
        per_connection = self.requests // connections
        return self.duration_us // per_connection if per_connection else 0


def remove_correction(distribution: Sequence[tuple[int, int]], interval_us: int) -> list[tuple[int, int]]:
    """Undo wrk 4.x's ``stats_correct(stats, interval)`` on an ascending ``(value, count)`` table.

    wrk adds, for every recorded value ``n >= 2 * interval`` with count ``c``,
    ``c`` more at ``n - interval``, ``n - 2 * interval``, ... while the value
    stays above ``interval``. Going down from the top, each value's additions
    come only from values above it in the same residue class modulo
    ``interval``, already restored. Raises ValueError if the table cannot have
    come from that correction.
    """
    if interval_us <= 0:
        return list(distribution)
    added: dict[int, int] = {}
    restored: list[tuple[int, int]] = []
    for value, count in reversed(distribution):
        residue = value % interval_us
        original = count - added.get(residue, 0) if value > interval_us else count
        if original < 0:
            raise ValueError(f"{count} at {value} us is less than wrk's correction added there")
        if original:
            restored.append((value, original))
        if value >= 2 * interval_us:
            added[residue] = added.get(residue, 0) + original
    restored.reverse()
    return restored


def _wrk_rank(distribution: Sequence[tuple[int, int]], percent: float) -> int:
    """wrk's rank for a percentile (src/stats.c ``stats_percentile``): round(p/100 x n + 0.5), half up."""
    return math.floor(percent / 100.0 * sum(count for _, count in distribution) + 1.0)


def _value_at_rank(distribution: Sequence[tuple[int, int]], rank: int) -> int:
    seen = 0
    for value, count in distribution:
        seen += count
        if seen >= rank:
            return value
    return 0


def measured_latencies(report: WrkReport, connections: int) -> list[tuple[int, int]]:
    """The latencies wrk measured (its correction undone), checked against its counts.

    Raises WrkError unless wrk's own percentiles are read back from the table
    and the result holds exactly ``requests - timeout`` latencies (wrk records
    every response within the timeout, and only those).
    """
    table = report.distribution_us
    if report.latency_us is not None:
        for key, percent in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0)):
            # wrk ranks in long double; allow the neighbouring rank for rounding.
            rank = _wrk_rank(table, percent)
            values = {_value_at_rank(table, rank + shift) for shift in (-1, 0, 1)}
            if report.latency_us[key] not in values:
                raise WrkError(
                    f"wrk's {key} ({report.latency_us[key]:.0f} us) is not in the latency table it "
                    f"reported ({report.distribution_source}): wrk_report.lua misread this wrk version"
                )
    expected = report.requests - report.errors["timeout"]
    try:
        restored = remove_correction(table, report.correction_interval_us(connections))
    except ValueError:
        restored = []
    for candidate in (restored, list(table)):
        if sum(count for _, count in candidate) == expected:
            return candidate
    raise WrkError(
        f"wrk reported {report.requests} responses and {report.errors['timeout']} timeouts, but its "
        f"latency table holds {sum(c for _, c in table)} values ({sum(c for _, c in restored)} without "
        "its coordinated-omission correction): this wrk counts differently from wrk 4.1"
    )


def to_load_result(report: WrkReport, *, connections: int, threads: int, cpu_s: float) -> LoadResult:
    """Map one measured wrk run into our LoadResult (see the module docstring for each field).

    ``threads`` is how many of wrk's event loops could run at once (``processes``).
    """
    errors = report.errors
    latencies = measured_latencies(report, connections)
    return LoadResult(
        duration_s=report.duration_us / 1e6,
        ok=max(report.requests - errors["status"] - errors["timeout"], 0),
        errors={
            "status": errors["status"],
            "connect": errors["connect"],
            "read": errors["read"] + errors["write"],
            "timeout": errors["timeout"],
        },
        error_statuses={},
        connections_opened=connections,
        generator_cpu_s=cpu_s,
        histogram=histogram.encode_counts(latencies),
        model="closed",
        connections_peak=connections,
        processes=threads,
    )


def whole_seconds(seconds: float) -> int:
    """wrk's time arguments are whole seconds: round up, at least 1 (a float's last bit ignored)."""
    return max(1, math.ceil(seconds - 1e-9))


def default_threads(concurrency: int, cpus: Iterable[int] = ()) -> int:
    """One wrk thread per generator CPU (or per CPU this process may use), as many as divide the connections.

    wrk gives each thread ``connections // threads`` connections, so a thread
    count that does not divide them would open fewer connections than asked.
    """
    available = len(set(cpus)) or len(os.sched_getaffinity(0))
    return max(n for n in range(1, max(1, min(available, concurrency)) + 1) if concurrency % n == 0)


def wrk_command(load: ClosedLoad, *, duration_s: int, threads: int, wrk: str) -> list[str]:
    """The wrk command line for one run of ``load`` lasting ``duration_s`` whole seconds."""
    return [
        wrk,
        f"--threads={threads}",
        f"--connections={load.concurrency}",
        f"--duration={duration_s}s",
        f"--timeout={whole_seconds(load.timeout_s)}s",
        "--latency",
        f"--script={REPORT_SCRIPT}",
        # The native driver's request headers (request_bytes); wrk adds Host.
        "--header=User-Agent: gwbench",
        "--header=Accept: */*",
        f"{http_origin(load.host, load.port)}{load.path}",
    ]


def run_wrk(
    load: ClosedLoad,
    *,
    cpus: Iterable[int] = (),
    on_window: WindowCallback = lambda _: None,
    threads: int | None = None,
    wrk: str = "wrk",
) -> LoadResult:
    """Drive ``load`` with wrk (closed model): a warm-up run, then the measured run; blocks until done.

    ``on_window("start")`` is called right before the measured wrk starts and
    ``on_window("end")`` right after it exits. wrk runs pinned to ``cpus``
    (through ``taskset``) with ``threads`` threads (default: see
    :func:`default_threads`); ``wrk`` is the binary, looked up on PATH.
    Raises UnsafeTargetError for a non-loopback host unless
    ``load.allow_remote``, ValueError when ``threads`` does not divide the
    connections, WrkError when wrk is missing or fails. wrk is killed if this
    function leaves early (an exception, KeyboardInterrupt).
    """
    ensure_loopback(load.host, allow_remote=load.allow_remote)
    binary = shutil.which(wrk)
    if binary is None:
        raise WrkError(f"wrk not found ({wrk!r} is not on PATH): {INSTALL_HINT}")
    cpu_set = sorted(set(cpus))
    prefix: list[str] = []
    if cpu_set:
        taskset = shutil.which("taskset")
        if taskset is None:
            raise WrkError("taskset not found (to pin wrk to its CPUs): apt-get install util-linux")
        prefix = [taskset, "--cpu-list", ",".join(map(str, cpu_set))]
    threads = default_threads(load.concurrency, cpu_set) if threads is None else threads
    if threads < 1 or load.concurrency % threads:
        raise ValueError(f"wrk threads ({threads}) must divide the connections ({load.concurrency})")
    warmup_s, duration_s = whole_seconds(load.warmup_s), whole_seconds(load.duration_s)
    with tempfile.TemporaryDirectory(prefix="gwbench-wrk-") as scratch:
        if load.warmup_s > 0:
            command = prefix + wrk_command(load, duration_s=warmup_s, threads=threads, wrk=binary)
            _run(command, Path(scratch, "warmup"), limit_s=warmup_s + load.timeout_s + _EXIT_GRACE_S)
        command = prefix + wrk_command(load, duration_s=duration_s, threads=threads, wrk=binary)
        on_window("start")
        report, cpu_s = _run(
            command, Path(scratch, "measured"), limit_s=duration_s + load.timeout_s + _EXIT_GRACE_S
        )
        on_window("end")
    # wrk's threads are its event loops, but no more of them run at once than it has CPUs.
    loops = min(threads, len(cpu_set)) if cpu_set else threads
    return to_load_result(report, connections=load.concurrency, threads=loops, cpu_s=cpu_s)


def _run(command: list[str], stem: Path, *, limit_s: float) -> tuple[WrkReport, float]:
    """Run wrk to the end; its report and its CPU time (user + system, s).

    wrk is killed if we leave early or it outlives ``limit_s``. Its output and
    report go to files beside ``stem``.
    """
    report_path = stem.with_suffix(".json")
    out_path = stem.with_suffix(".out")
    env = dict(os.environ, **{REPORT_ENV: str(report_path)})
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        pid = os.posix_spawn(
            command[0],
            command,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(out_path), flags, 0o600),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,  # a Ctrl-C in the terminal reaches us, and we stop wrk ourselves
        )
    except OSError as exc:
        raise WrkError(f"cannot start {command[0]} ({exc}): {INSTALL_HINT}") from exc
    exited: tuple[int, resource.struct_rusage] | None = None
    try:
        exited = _wait(pid, time.monotonic() + limit_s)
    finally:
        if exited is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    if exited is None:
        raise WrkError("wrk did not exit after its duration; killed")
    status, rusage = exited
    output = out_path.read_text(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise WrkError(f"wrk exited with {code}: {_tail(output)}")
    try:
        text = report_path.read_text()
    except FileNotFoundError:
        raise WrkError(f"wrk wrote no report (its done() hook did not run): {_tail(output)}") from None
    return WrkReport.from_json(text), rusage.ru_utime + rusage.ru_stime


def _wait(pid: int, deadline: float) -> tuple[int, resource.struct_rusage] | None:
    """Reap ``pid`` when it exits: its wait status and rusage; None at ``deadline`` (monotonic s).

    A pidfd wakes us as soon as it exits (polling on kernels before 5.3), and
    we wake every fraction of a second so that a KeyboardInterrupt is handled
    promptly.
    """
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except OSError:
        pidfd = None
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            if pidfd is None:
                time.sleep(min(remaining, 0.01))
            else:
                select.select([pidfd], [], [], min(remaining, _POLL_S))
            waited, status, rusage = os.wait4(pid, os.WNOHANG)
            if waited:
                return status, rusage
        return None
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _tail(output: str, lines: int = 5) -> str:
    text = " | ".join(line.strip() for line in output.strip().splitlines()[-lines:])
    return text or "no output"
