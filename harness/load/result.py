"""What a driver measured in its window and its stages, and how results of several processes merge."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from harness import histogram


@dataclass(frozen=True)
class Lateness:
    """How late a driver got to its requests, in ms: median, 99th percentile and worst."""

    p50: float
    p99: float
    max: float


@dataclass(frozen=True)
class StreamCounts:
    """What a streaming driver counts besides requests (:mod:`harness.load.stream.results`).

    ``kind``: ``"sse"`` or ``"websocket"``. SSE: ``events`` counts the valid,
    in-order events received in the window, ``streams_completed`` the streams that
    ended with all their events, and ``inter_event_gap_histogram`` is the
    HdrHistogram (µs, as ``histogram.encode``) of the time between consecutive
    events of a stream; ``events_per_stream`` and ``event_interval_ms`` are what each
    stream asked for. WebSocket: ``unsupported`` when the server answered the
    upgrade with 501 (the load stopped at once; nothing was measured).
    """

    kind: str
    events_per_stream: int | None = None
    event_interval_ms: int | None = None
    events: int = 0
    streams_completed: int = 0
    inter_event_gap_histogram: str | None = None
    unsupported: bool = False


def merge_stream_counts(counts: Sequence[StreamCounts | None]) -> StreamCounts | None:
    """The counts of several driver processes as one: sums, merged histograms; None unless all have them.

    ``unsupported`` when any process was refused. Raises ValueError for a mix of kinds.
    """
    present = [c for c in counts if c is not None]
    if not present or len(present) != len(counts):
        return None
    kinds = {c.kind for c in present}
    if len(kinds) > 1:
        raise ValueError(f"cannot merge stream counts of different kinds: {sorted(kinds)}")
    gaps = [c.inter_event_gap_histogram for c in present if c.inter_event_gap_histogram]
    return StreamCounts(
        kind=present[0].kind,
        events_per_stream=present[0].events_per_stream,
        event_interval_ms=present[0].event_interval_ms,
        events=sum(c.events for c in present),
        streams_completed=sum(c.streams_completed for c in present),
        inter_event_gap_histogram=histogram.merge(gaps) if gaps else None,
        unsupported=any(c.unsupported for c in present),
    )


@dataclass
class LoadResult:
    """What one load run measured inside its window.

    ``error_statuses`` counts the ``status`` errors (any status but a 2xx or the
    request's declared one) by HTTP status code.
    ``histogram`` is the base64 HdrHistogram encoding of successful-response
    latencies in microseconds. ``generator_cpu_s`` is the driver processes' CPU
    time (user + system) during the window; ``duration_s`` is the window's wall time.

    Open model only (closed-model defaults in brackets): ``intended_rate`` is
    the scheduled arrival rate in requests/s [None]; ``scheduled`` counts the
    requests whose intended send time fell in the window [0]; ``dropped``
    counts those of them that were never sent (no connection free within
    ``timeout_s`` of their intended time, whether or not the window had closed) [0];
    ``histogram`` then holds latencies measured from the intended
    send time (corrected for coordinated omission) and ``histogram_uncorrected``
    from the actual send time [None]. ``connections_peak`` is the most
    connections open at once (for merged results, the sum of each process's
    peak: an upper bound). ``processes`` is how many driver processes (event
    loops) were merged into this result. ``answered_in_window`` (open model)
    counts successful responses that *arrived* inside the window, whenever their
    request was scheduled: the throughput; ``ok`` counts the requests scheduled
    in the window that succeeded, some answered after it closed, so an
    overloaded server draining its queue does not inflate throughput [None].

    Generator lateness (native open model only; None elsewhere): ``histogram_lateness`` is
    the HdrHistogram (µs, as ``histogram``) of how late the driver got to each request
    scheduled in the window, against its intended send time, for reasons of its own: the
    time from the intended send time to the moment its event loop offered the request to a
    connection (a loop that was frozen, busy or woken late). A wait for a free connection
    (every one busy with the server) comes after that moment and is the server's doing,
    not lateness. :attr:`generator_lateness_ms` reads its p50, p99 and max in ms; merged
    results merge the processes' histograms.

    ``longest_silence_s`` (native closed model only; None elsewhere and for stages) is the
    longest time inside the window in which no response (success or error status) arrived,
    the window's two ends included, in s: a server that stopped answering (paused,
    frozen, swapping) shows as a silence far longer than its response times.

    ``generator_cpu_percent_per_process`` holds, for a result merged from several driver
    processes, each one's CPU time over its own window in percent of one core, in process
    order (filled by :func:`merge_results`); () for a result of one process, whose figure is
    :attr:`generator_cpu_percent` (and for drivers that report only a total: wrk, Locust).

    ``stream`` (SSE and WebSocket loads only; None elsewhere): what a streaming driver
    counts besides requests (:class:`StreamCounts`). For them a request is a stream
    (``ok``: streams completed, ``histogram``: time to first event) or a WebSocket
    round trip (``ok``: echoes received, ``histogram``: round-trip times).

    With a load profile (``harness.load.profile``), ``stages[i]`` is stage i's
    own result, with the same fields over its own part of the window (stages
    have no stages); requests count in a stage as they count in the window.
    ``intended_rate`` is then the mean scheduled rate (∫r dt / duration, in
    requests/s) and, in the closed model, ``connections_mean`` the
    time-weighted mean of the connections the profile asked for [None];
    ``connections_peak`` in the closed model is the most it asked for at once.
    """

    duration_s: float
    ok: int
    errors: dict[str, int]
    error_statuses: dict[int, int]
    connections_opened: int
    generator_cpu_s: float
    histogram: str
    model: str = "closed"
    intended_rate: float | None = None
    scheduled: int = 0
    dropped: int = 0
    histogram_uncorrected: str | None = None
    connections_peak: int = 0
    processes: int = 1
    answered_in_window: int | None = None
    connections_mean: float | None = None
    stages: tuple[LoadResult, ...] = ()
    histogram_lateness: str | None = None
    generator_cpu_percent_per_process: tuple[float, ...] = ()
    longest_silence_s: float | None = None
    stream: StreamCounts | None = None

    @property
    def generator_lateness_ms(self) -> Lateness | None:
        """p50, p99 and max of the generator's lateness in ms (None: not measured, or no request)."""
        if self.histogram_lateness is None:
            return None
        decoded = histogram.decode(self.histogram_lateness)
        if decoded.get_total_count() == 0:
            return None
        return Lateness(
            p50=decoded.get_value_at_percentile(50) / 1000,
            p99=decoded.get_value_at_percentile(99) / 1000,
            max=decoded.get_max_value() / 1000,
        )

    @property
    def cpu_percent_by_process(self) -> tuple[float, ...]:
        """Each driver process's CPU percent of one core, when known per process; else the total alone."""
        return self.generator_cpu_percent_per_process or (self.generator_cpu_percent,)

    @property
    def generator_cpu_percent(self) -> float:
        """The driver's CPU time over the window, in percent of one core (0 for an empty window)."""
        return 100.0 * self.generator_cpu_s / self.duration_s if self.duration_s else 0.0

    @property
    def requests_per_second(self) -> float:
        """Successful responses per second inside the window (open model: by arrival time)."""
        if not self.duration_s:
            return 0.0
        answered = self.ok if self.answered_in_window is None else self.answered_in_window
        return answered / self.duration_s

    @property
    def requests(self) -> int:
        """Requests that finished (with a response or an error) inside the window."""
        return self.ok + sum(self.errors.values())

    @property
    def achieved_rate(self) -> float:
        """Requests/s actually sent: open model, scheduled minus dropped; closed, finished requests."""
        if not self.duration_s:
            return 0.0
        sent = self.scheduled - self.dropped if self.model == "open" else self.requests
        return sent / self.duration_s


def merge_results(
    results: Sequence[LoadResult],
    duration_s: float,
    stage_durations_s: Sequence[float] | None = None,
) -> LoadResult:
    """One result for the load that several processes generated together over one window.

    Counts, CPU time, rates, mean connections and peaks are summed and
    histograms merged (the lateness histogram too, when every process has one), the
    longest silence is the least of the processes' (a bound on the silence all saw); each
    process's CPU percent is kept in ``generator_cpu_percent_per_process``;
    ``duration_s`` is the wall time of the common window (s). Stages are merged
    pairwise, stage i over ``stage_durations_s[i]`` (s; by default the longest of the
    processes' stage i). Raises ValueError for no results, a mix of models, or results
    with different numbers of stages.
    """
    if not results:
        raise ValueError("no results to merge")
    models = {result.model for result in results}
    if len(models) > 1:
        raise ValueError(f"cannot merge results of different models: {sorted(models)}")
    stage_counts = {len(result.stages) for result in results}
    if len(stage_counts) > 1:
        raise ValueError(f"cannot merge results with different numbers of stages: {sorted(stage_counts)}")
    stage_results = list(zip(*(result.stages for result in results), strict=True))
    if stage_durations_s is None:
        stage_durations_s = [max(stage.duration_s for stage in stages) for stages in stage_results]
    if len(stage_durations_s) != len(stage_results):
        raise ValueError(f"{len(stage_durations_s)} stage durations for {len(stage_results)} stages")
    means = [result.connections_mean for result in results]
    errors: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    for result in results:
        errors.update(result.errors)
        statuses.update(result.error_statuses)
    rates = [result.intended_rate for result in results if result.intended_rate is not None]
    uncorrected = [result.histogram_uncorrected for result in results if result.histogram_uncorrected]
    lateness = [result.histogram_lateness for result in results]
    silences = [result.longest_silence_s for result in results]
    return LoadResult(
        duration_s=duration_s,
        ok=sum(result.ok for result in results),
        # Every kind any process counted, zeros included, in the first process's order.
        errors={kind: errors[kind] for kind in dict.fromkeys(k for r in results for k in r.errors)},
        error_statuses=dict(sorted(statuses.items())),
        connections_opened=sum(result.connections_opened for result in results),
        generator_cpu_s=sum(result.generator_cpu_s for result in results),
        histogram=histogram.merge(result.histogram for result in results),
        model=results[0].model,
        intended_rate=sum(rates) if rates else None,
        scheduled=sum(result.scheduled for result in results),
        dropped=sum(result.dropped for result in results),
        histogram_uncorrected=histogram.merge(uncorrected) if uncorrected else None,
        connections_peak=sum(result.connections_peak for result in results),
        processes=sum(result.processes for result in results),
        answered_in_window=None
        if any(result.answered_in_window is None for result in results)
        else sum(result.answered_in_window or 0 for result in results),
        connections_mean=None if None in means else sum(mean or 0.0 for mean in means),
        stages=tuple(
            merge_results(stages, duration)
            for stages, duration in zip(stage_results, stage_durations_s, strict=True)
        ),
        histogram_lateness=None
        if None in lateness
        else histogram.merge(text for text in lateness if text is not None),
        generator_cpu_percent_per_process=tuple(
            round(percent, 2) for result in results for percent in result.cpu_percent_by_process
        ),
        # The server was silent for all of them at once at most as long as for the least silent.
        longest_silence_s=None if None in silences else min(s for s in silences if s is not None),
        stream=merge_stream_counts([result.stream for result in results]),
    )
