"""``make bench-driver``: the native closed-model driver against wrk, on one fast target.

The target, pinned to one CPU, is a raw ASGI app (``harness/load/fastapp.py``)
on one uvicorn process with uvloop and httptools, or with ``--target nginx``
one nginx process (Debian's nginx-light) answering from its configuration,
fast enough that the generator, not the target, is the limit. The generator,
wrk (one thread) or our driver (one process), is pinned to another CPU. Both get the
same connections and duration, in alternating order over several rounds
after an uncounted primer. For each round: requests/s, and the generator's
CPU time (user + system) per request. Our driver's CPU time is that of its
measured window (so Python's start-up is left out); wrk's is its whole
process (``wait4``), start-up and connection set-up included, which adds well
under 1% at these durations. wrk's totals come from a ``done()`` hook that
writes JSON and reads nothing per request.

Goal (issue 4): our requests/s at least 0.9 x wrk's, and our CPU time per
request at most 1.2 x wrk's, comparing medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.load import ClosedLoad, DriverError, drive_in_subprocess
from harness.net import LOOPBACK, free_port
from harness.stats import Spread

REQUESTS_PER_SECOND_GOAL = 0.9
"""Our requests/s must be at least this fraction of wrk's."""
CPU_GOAL = 1.2
"""Our CPU time per request must be at most this multiple of wrk's."""

WRK_SCRIPT = """\
done = function(summary, latency, requests)
   local e = summary.errors
   local f = assert(io.open(os.getenv("GWBENCH_WRK_TOTALS"), "w"))
   f:write(string.format(
      '{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
         .. '"status": %d, "timeout": %d}',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
   f:close()
end
"""


class BenchError(Exception):
    """The bench cannot run or a run failed; the message says what to do."""


@dataclass(frozen=True)
class RoundResult:
    """One generator's run: ``requests`` finished in ``duration_s``, ``errors`` of them failed.

    ``generator_cpu_s`` is the generator's CPU time (user + system, s);
    ``target_cpu_s`` the target server's over the same run.
    """

    generator: str
    requests: int
    errors: int
    duration_s: float
    generator_cpu_s: float
    target_cpu_s: float

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def generator_cpu_us_per_request(self) -> float:
        return 1e6 * self.generator_cpu_s / self.requests if self.requests else float("inf")

    @property
    def target_cpu_percent(self) -> float:
        return 100.0 * self.target_cpu_s / self.duration_s if self.duration_s else 0.0


@dataclass(frozen=True)
class Comparison:
    """Both generators' figures over the rounds, and the ratios of their medians (ours / wrk)."""

    rounds: int
    wrk_requests_per_second: Spread
    ours_requests_per_second: Spread
    wrk_cpu_us: Spread
    ours_cpu_us: Spread
    wrk_target_cpu_percent: Spread
    ours_target_cpu_percent: Spread
    errors: int

    @property
    def requests_per_second_ratio(self) -> float:
        return self.ours_requests_per_second.median / self.wrk_requests_per_second.median

    @property
    def cpu_ratio(self) -> float:
        return self.ours_cpu_us.median / self.wrk_cpu_us.median

    @property
    def requests_per_second_goal_met(self) -> bool:
        return self.requests_per_second_ratio >= REQUESTS_PER_SECOND_GOAL

    @property
    def cpu_goal_met(self) -> bool:
        return self.cpu_ratio <= CPU_GOAL


def compare(results: Sequence[RoundResult]) -> Comparison:
    """Summarise alternating rounds of ``wrk`` and ``native``; ValueError if either is missing."""
    wrk = [r for r in results if r.generator == "wrk"]
    ours = [r for r in results if r.generator == "native"]
    if not wrk or not ours:
        raise ValueError("need rounds of both wrk and native")
    return Comparison(
        rounds=min(len(wrk), len(ours)),
        wrk_requests_per_second=Spread.of([r.requests_per_second for r in wrk]),
        ours_requests_per_second=Spread.of([r.requests_per_second for r in ours]),
        wrk_cpu_us=Spread.of([r.generator_cpu_us_per_request for r in wrk]),
        ours_cpu_us=Spread.of([r.generator_cpu_us_per_request for r in ours]),
        wrk_target_cpu_percent=Spread.of([r.target_cpu_percent for r in wrk]),
        ours_target_cpu_percent=Spread.of([r.target_cpu_percent for r in ours]),
        errors=sum(r.errors for r in results),
    )


def format_comparison(comparison: Comparison, *, connections: int, duration_s: float) -> Table:
    """Both generators' medians with their min - max over the rounds."""
    title = f"{comparison.rounds} rounds x {duration_s:g} s each, {connections} connections: medians"
    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("generator")
    for name in ("requests/s", "min-max", "CPU µs/req", "min-max", "target CPU %"):
        table.add_column(name, justify="right")
    rows = (
        ("wrk", comparison.wrk_requests_per_second, comparison.wrk_cpu_us, comparison.wrk_target_cpu_percent),
        (
            "native",
            comparison.ours_requests_per_second,
            comparison.ours_cpu_us,
            comparison.ours_target_cpu_percent,
        ),
    )
    for name, requests_per_second, cpu, target in rows:
        table.add_row(
            name,
            f"{requests_per_second.median:,.0f}",
            f"{requests_per_second.min:,.0f}-{requests_per_second.max:,.0f}",
            f"{cpu.median:.2f}",
            f"{cpu.min:.2f}-{cpu.max:.2f}",
            f"{target.median:.0f}",
        )
    return table


def format_round(label: str, result: RoundResult) -> str:
    line = (
        f"{label:<18} {result.requests_per_second:>8,.0f} requests/s "
        f"{result.generator_cpu_us_per_request:6.2f} CPU µs/request, "
        f"target CPU {result.target_cpu_percent:3.0f}%"
    )
    return line + (f"  [yellow]{result.errors} errors[/]" if result.errors else "")


def format_goals(comparison: Comparison) -> list[str]:
    def verdict(met: bool) -> str:
        return "[green]met[/]" if met else "[red]not met[/]"

    lines = [
        f"requests/s, native / wrk: {comparison.requests_per_second_ratio:.3f} "
        f"(goal >= {REQUESTS_PER_SECOND_GOAL}): "
        + verdict(comparison.requests_per_second_goal_met),
        f"CPU per request, native / wrk: {comparison.cpu_ratio:.3f} (goal <= {CPU_GOAL}): "
        + verdict(comparison.cpu_goal_met),
    ]
    if comparison.errors:
        lines.append(f"[yellow]{comparison.errors} requests failed: the figures are suspect[/]")
    return lines


def _pinned(command: list[str], cpu: int | None) -> list[str]:
    """``command`` run by taskset on ``cpu``, so its threads start there too."""
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000000;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen {host}:{port};
        location / {{ default_type text/plain; return 200 "Hello, world!"; }}
    }}
}}
"""
"""One nginx process (no master) that answers every request from its configuration."""

TARGETS = {
    "uvicorn": "uvicorn + raw ASGI app (uvloop, httptools)",
    "nginx": "nginx, one process, answer from its configuration",
}
INSTALL_HINTS = {"wrk": "wrk", "taskset": "util-linux", "nginx": "nginx-light"}


def target_command(target: str, port: int, folder: Path) -> list[str]:
    """The command that serves ``target`` on 127.0.0.1:``port``, writing its files in ``folder``."""
    if target == "nginx":
        config = folder / "nginx.conf"
        config.write_text(NGINX_CONF.format(folder=folder, host=LOOPBACK, port=port))
        return ["nginx", "-c", str(config), "-p", str(folder)]
    return [
        sys.executable, "-m", "uvicorn", "harness.load.fastapp:app",
        "--host", LOOPBACK, "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--lifespan", "off",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def start_target(target: str, port: int, cpu: int | None, folder: Path) -> subprocess.Popen[bytes]:
    """Start ``target`` on 127.0.0.1:``port`` pinned to ``cpu``; return once it answers."""
    command = target_command(target, port, folder)
    log = folder / f"{target}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(_pinned(command, cpu), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{target} exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
                if sock.recv(100).startswith(b"HTTP/1.1 200"):
                    return process
        except OSError:
            time.sleep(0.1)
    stop_target(process)
    raise BenchError(f"{target} did not answer within 20 s")


def stop_target(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def run_wrk(
    port: int, connections: int, duration_s: int, cpu: int | None, server: psutil.Process
) -> RoundResult:
    """One wrk run (one thread); its CPU time from ``wait4``, its totals from the ``done()`` hook."""
    with tempfile.TemporaryDirectory(prefix="gwbench-wrk-") as folder:
        script, totals, log = (Path(folder, name) for name in ("totals.lua", "totals.json", "wrk.log"))
        script.write_text(WRK_SCRIPT)
        command = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration_s}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
        ]
        environment = {**os.environ, "GWBENCH_WRK_TOTALS": str(totals)}
        server_before = _cpu_s(server)
        with log.open("wb") as output:
            process = subprocess.Popen(
                [*_pinned(command, cpu), f"http://{LOOPBACK}:{port}/"],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        # wait4 reaped it: tell Popen, so it does not wait for it again.
        process.returncode = os.waitstatus_to_exitcode(status)
        target_cpu = _cpu_s(server) - server_before
        if process.returncode != 0 or not totals.exists():
            output_tail = log.read_text(errors="replace").strip()[-500:]
            raise BenchError(f"wrk failed (exit {process.returncode}): {output_tail}")
        report = json.loads(totals.read_text())
    errors = sum(report[kind] for kind in ("connect", "read", "write", "status", "timeout"))
    return RoundResult(
        generator="wrk",
        requests=int(report["requests"]),
        errors=errors,
        duration_s=report["duration_us"] / 1e6,
        generator_cpu_s=usage.ru_utime + usage.ru_stime,
        target_cpu_s=target_cpu,
    )


def run_native(
    port: int, connections: int, duration_s: int, cpu: int | None, server: psutil.Process
) -> RoundResult:
    """One run of our closed-model driver in one process; CPU time of its measured window."""
    load = ClosedLoad(
        host=LOOPBACK, port=port, path="/", concurrency=connections, warmup_s=0.0, duration_s=duration_s
    )
    marks: dict[str, float] = {}

    def on_window(event: str) -> None:
        marks[event] = _cpu_s(server)

    result, _ = drive_in_subprocess(load, cpus=() if cpu is None else (cpu,), on_window=on_window)
    return RoundResult(
        generator="native",
        requests=result.requests,
        errors=sum(result.errors.values()),
        duration_s=result.duration_s,
        generator_cpu_s=result.generator_cpu_s,
        target_cpu_s=marks.get("end", 0.0) - marks.get("start", 0.0),
    )


def run_rounds(
    *,
    target: str = "uvicorn",
    rounds: int,
    connections: int,
    duration_s: int,
    primer_s: int,
    on_start: Callable[[str], None] = lambda _: None,
    on_result: Callable[[str, RoundResult], None] = lambda _, __: None,
) -> tuple[list[RoundResult], str]:
    """Start the target, prime it with wrk, then alternate wrk and native; results and the CPU layout.

    ``on_start`` gets the label of each run as it starts (``"round 2/5: wrk"``),
    ``on_result`` the label and result of each counted run.
    """
    cpus = sorted(os.sched_getaffinity(0))
    target_cpu, generator_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    layout = (
        f"target on CPU {target_cpu}, generator on CPU {generator_cpu}"
        if target_cpu is not None
        else "one CPU only: target and generator share it (not pinned)"
    )
    results: list[RoundResult] = []
    with tempfile.TemporaryDirectory(prefix="gwbench-bench-driver-") as folder:
        port = free_port()
        server = start_target(target, port, target_cpu, Path(folder))
        try:
            server_process = psutil.Process(server.pid)
            on_start(f"primer: wrk for {primer_s} s, not counted")
            run_wrk(port, connections, primer_s, generator_cpu, server_process)
            for index in range(rounds):
                order = ("wrk", "native") if index % 2 == 0 else ("native", "wrk")
                for generator in order:
                    label = f"round {index + 1}/{rounds}: {generator}"
                    on_start(label)
                    run = run_wrk if generator == "wrk" else run_native
                    result = run(port, connections, duration_s, generator_cpu, server_process)
                    results.append(result)
                    on_result(label, result)
        finally:
            stop_target(server)
    return results, layout


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.tools.benchdriver", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--target", choices=sorted(TARGETS), default="uvicorn", help="default uvicorn")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per generator (default 5)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per run, whole (default 5)")
    parser.add_argument("--connections", type=int, default=64, help="connections (default 64)")
    parser.add_argument("--primer", type=int, default=2, help="uncounted first wrk run, seconds (default 2)")
    args = parser.parse_args(argv)
    console = Console()
    if not console.is_terminal:  # a log or CI: rich would wrap the table at 80 columns
        console = Console(width=100)
    if not 1 <= args.rounds <= 50 or not 1 <= args.duration <= 120 or not 1 <= args.connections <= 1024:
        console.print("[red]bench-driver: rounds 1-50, duration 1-120 s, connections 1-1024[/]")
        return 2
    tools = ("wrk", "taskset", "nginx") if args.target == "nginx" else ("wrk", "taskset")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        packages = " ".join(INSTALL_HINTS[tool] for tool in missing)
        console.print(
            f"[red]bench-driver needs {', '.join(missing)}: not installed.[/] "
            f"Install with: apt-get install -y {packages}"
        )
        return 2
    total = args.rounds * 2
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} runs"),
        TimeElapsedColumn(), console=console, transient=False,
    ) as bar:  # fmt: skip
        task = bar.add_task("starting the target", total=total)

        def on_result(label: str, result: RoundResult) -> None:
            bar.console.print(format_round(label, result))
            bar.advance(task)

        try:
            results, layout = run_rounds(
                target=args.target,
                rounds=args.rounds,
                connections=args.connections,
                duration_s=args.duration,
                primer_s=args.primer,
                on_start=lambda label: bar.update(task, description=label),
                on_result=on_result,
            )
        except (BenchError, DriverError) as exc:
            console.print(f"[red]bench-driver failed:[/] {exc}")
            return 1
    comparison = compare(results)
    console.print(f"{TARGETS[args.target]}; {layout}")
    console.print(format_comparison(comparison, connections=args.connections, duration_s=args.duration))
    for line in format_goals(comparison):
        console.print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
