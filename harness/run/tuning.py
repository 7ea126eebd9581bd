"""Tuned within the limits: the workers and threads that serve a blocking stack best on its CPU and memory.

Gunicorn's ``(2 x cores) + 1`` workers is a starting point for CPU-bound work
(Gunicorn docs, "How Many Workers?"); a sync worker that waits on a 50 ms call
serves 20 requests/s however fast its CPU, so a comparison against three of them
measures the configuration, not the stack. For every stack whose workers block
(:func:`harness.ceilings.blocking_request_slots`), a capacity run with
``[saturation] tune_blocking = true`` also measures ``<stack>@tuned``: the same
stack, limits and endpoint, with the workers and threads derived here from one probe
of the stack as configured, then verified by its own capacity search.

The rule (:func:`derive`), from the probe's figures at saturation:

- service time per request, s = slots / throughput (Little's law: every slot busy);
- CPU per request, c = CPU time / requests (us);
- the slots the CPU limit can feed: cpus x s / c, times :data:`CPU_HEADROOM`
  so that the CPU, not the slots, is what runs out;
- the workers the memory limit holds: :data:`MEMORY_SHARE` of the limit over the
  memory (PSS) per process.

A stack whose start command takes its thread count (``{threads}``, Gunicorn's
gthread workers) gets those slots as threads, its workers kept as configured:
threads per worker = slots / workers, at least as configured and at most
:data:`MAX_THREADS`. Any other blocking stack (sync workers) gets them as workers:
the fewest that give those slots, at least the configured count and at most what
the memory holds.

Why threads, not workers, for gthread: a gthread worker accepts every connection
it can (up to ``worker_connections``, 1,000), not only as many as it has free
threads, and holds kept-alive ones; a worker that took more of the client's
connections than it has threads queues their requests while others idle.
Measured here (the 50 ms upstream call, open model, one CPU): 16 workers x 4
threads had one worker holding 8 of the connections, and broke a p99 of 100 ms
at 450 requests/s (169-187 ms, two windows), 3 workers x 24 threads held 600
(63-67 ms); threads cost a stack of memory each, not a process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.analysis import cpu_us_per_request
from harness.ceilings import blocking_request_slots
from harness.model import MAX_WORKERS, Measurement, TargetConfig, TargetRun

TUNED_SUFFIX = "@tuned"
CPU_HEADROOM = 1.25
"""Slots beyond what the CPU limit can keep busy, so that a wait longer than the
probe's does not leave the CPU idle; more only costs memory."""
MAX_THREADS = 256
"""The most threads per worker a tuning gives (threads beyond what the CPU can feed only wait)."""
MEMORY_SHARE = 0.8
"""The share of the memory limit the workers may take at the probe's footprint; the
rest is headroom for the heap's growth under load (an OOM kill fails the cell)."""


def tuned_name(stack: str) -> str:
    """The name a stack's tuned variant is stored under: ``flask-gunicorn@tuned``."""
    return f"{stack}{TUNED_SUFFIX}"


def stack_of(name: str) -> str:
    """The stack (its folder under targets/) a stored target name stands for."""
    return name.removesuffix(TUNED_SUFFIX)


def is_tuned(name: str) -> bool:
    """Whether a stored target name is a stack's tuned variant."""
    return name.endswith(TUNED_SUFFIX)


def tunable(config: TargetConfig) -> bool:
    """Whether a stack's workers block, with a known number of threads each (sync, gthread)."""
    return blocking_request_slots(TargetRun(config=config, workers=config.default_workers)) is not None


def with_tuned(targets: dict[str, TargetConfig]) -> dict[str, TargetConfig]:
    """``targets`` with a ``<stack>@tuned`` entry after each tunable stack (same config)."""
    out: dict[str, TargetConfig] = {}
    for name, config in targets.items():
        out[name] = config
        if not is_tuned(name) and tunable(config):
            out[tuned_name(name)] = config
    return out


@dataclass(frozen=True)
class Tuning:
    """The worker and thread count derived for a blocking stack, and the figures it came from.

    ``service_time_ms`` (ms per request, slots / throughput at saturation),
    ``cpu_us_per_request`` (us), ``memory_mib_per_process`` (PSS, MiB) were measured
    by the probe at ``probe_workers`` x ``probe_threads``; ``slots_for_cpu`` (requests
    at once) and ``workers_for_memory`` are the two bounds, and ``workers`` x
    ``threads`` the result (:func:`derive`).
    """

    workers: int
    threads: int
    probe_workers: int
    probe_threads: int
    service_time_ms: float
    cpu_us_per_request: float
    memory_mib_per_process: float
    slots_for_cpu: int
    workers_for_memory: int

    def describe(self) -> str:
        """The derivation in one line, for the run's log and the manifest."""
        grown = "threads" if self.threads > self.probe_threads else "workers"
        return (
            f"{self.workers} workers x {self.threads} thread(s): the CPU limit feeds {self.slots_for_cpu} "
            f"requests at once (service time {self.service_time_ms:.1f} ms, "
            f"{self.cpu_us_per_request:.0f} us of CPU per request, "
            f"x{CPU_HEADROOM:g}), given as {grown}; the memory limit holds {self.workers_for_memory} workers "
            f"({self.memory_mib_per_process:.1f} MiB PSS per process, {MEMORY_SHARE:.0%} of the limit); "
            f"measured at {self.probe_workers} workers x {self.probe_threads} thread(s)"
        )


def derive(probe: Measurement, run: TargetRun) -> Tuning | None:
    """The workers and threads for ``run``'s stack from a saturating ``probe`` of it as ``run`` ran.

    ``probe`` is a closed-model measurement with at least as many connections as
    slots. None when the stack does not block (no slots), or the probe lacks the
    throughput, CPU or memory figures; the caller then keeps the configured count.
    """
    slots = blocking_request_slots(run)
    rps = probe.requests_per_second
    cpu = probe.server_cpu_percent
    memory = probe.server_pss_mib_peak or probe.server_rss_mib_peak
    processes = probe.server_processes
    if slots is None or not rps or not cpu or not memory or not processes:
        return None
    threads = slots // run.workers
    service_s = slots / rps
    cpu_us = cpu_us_per_request(cpu, rps)
    per_process = memory / processes
    cpus = run.cpus if run.cpus is not None else 1.0
    slots_for_cpu = math.ceil(CPU_HEADROOM * cpus * service_s * 1e6 / cpu_us)
    limit = run.memory_mib if run.memory_mib is not None else math.inf
    # One process is the master (gunicorn's arbiter): it is counted in the footprint, not as a worker.
    workers_for_memory = (
        MAX_WORKERS if math.isinf(limit) else max(1, math.floor(MEMORY_SHARE * limit / per_process) - 1)
    )
    workers, tuned_threads = run.workers, threads
    if run.config.threads_settable:
        tuned_threads = max(threads, min(math.ceil(slots_for_cpu / run.workers), MAX_THREADS))
    else:
        workers_for_cpu = max(1, math.ceil(slots_for_cpu / threads))
        workers = max(run.workers, min(workers_for_cpu, workers_for_memory, MAX_WORKERS))
    return Tuning(
        workers=workers,
        threads=tuned_threads,
        probe_workers=run.workers,
        probe_threads=threads,
        service_time_ms=round(service_s * 1000, 2),
        cpu_us_per_request=round(cpu_us, 1),
        memory_mib_per_process=round(per_process, 1),
        slots_for_cpu=slots_for_cpu,
        workers_for_memory=workers_for_memory,
    )
