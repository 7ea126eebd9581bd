"""Numbers, intervals, verdicts and flags as the sentences a report shows.

Every function returns text and computes nothing the analysis did not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime

from harness import analysis
from harness.model import BoundReason, Slo
from harness.stats import PRACTICAL_DIFFERENCE, Comparison, Interval, ratio_figure
from harness.verdict import Flag, Standing, Verdict, WorkloadSummary

DASH = "\N{EN DASH}"  # ranges (1,296-1,319) and missing values
TIMES = "\N{MULTIPLICATION SIGN}"


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_number(value: float | None, digits: int | None = None) -> str:
    """``1234.5 -> "1,234"``, ``12.345 -> "12.3"``, ``1.2345 -> "1.23"``; None/NaN -> an en dash.

    Without ``digits``, keeps about three significant figures for small values.
    Infinity is ``∞``.
    """
    if value is None or _missing(value):
        return DASH
    if math.isinf(value):
        return "\N{INFINITY}"
    if digits is None:
        magnitude = abs(value)
        digits = 0 if magnitude >= 100 else 1 if magnitude >= 10 else 2
    return f"{value:,.{digits}f}"


def format_ratio(ratio: float) -> str:
    """``5.47 -> "5.5x"``, ``0.623 -> "0.62x"``, ``12.4 -> "12x"`` (a multiplication sign); NaN -> a dash.

    The digits are :func:`harness.stats.ratio_figure`'s (plain text: :func:`harness.claims.ratio_text`).
    """
    return DASH if math.isnan(ratio) else f"{ratio_figure(ratio)}{TIMES}"


def _what(interval: Interval) -> str:
    """`` (min-max of 3 repeats, 75% coverage of the median)``: what the interval is
    (:attr:`harness.stats.Interval.method`), or nothing when it does not say."""
    return f" ({interval.method})" if interval.method else ""


def format_interval(interval: Interval | None, digits: int | None = None) -> str:
    """``[1,200-1,250] (min-max of 3 repeats, 75% coverage of the median)`` (with an en dash):
    the ends, then what the interval is; an en dash alone when there is no interval (a single repeat)."""
    if interval is None:
        return DASH
    ends = f"{format_number(interval.low, digits)}{DASH}{format_number(interval.high, digits)}"
    return f"[{ends}]{_what(interval)}"


def format_comparison(comparison: Comparison) -> str:
    """``41x [39-43] (95% t-interval of the ratio of geometric means, 3 repeats each), significant``;
    ``1.1x [0.95-1.2] (...), not significant``; or no interval, not significant.

    A significant ratio within 2% of 1 says so: ``1.0x [1.0-1.0] (...), significant but
    under 2%: no practical difference`` (:attr:`Comparison.practical`).
    """
    head = format_ratio(comparison.ratio)
    interval = comparison.interval
    if interval is None:
        return f"{head}, no interval (fewer than 2 repeats on a side): not significant"
    bounds = f"[{ratio_figure(interval.low)}{DASH}{ratio_figure(interval.high)}]{_what(interval)}"
    if comparison.significant and not comparison.practical:
        return f"{head} {bounds}, significant but under {PRACTICAL_DIFFERENCE:.0%}: no practical difference"
    return f"{head} {bounds}, {'significant' if comparison.significant else 'not significant'}"


def _requests_per_second(standing: Standing) -> str:
    return f"{format_number(standing.requests_per_second_median, 0)} requests/s"


def load_set_above(verdict: Verdict) -> list[float]:
    """The figures (requests/s) of the stacks left out of ``verdict``'s ranking as set by the load
    (the test's own ceiling, or an offered rate served) that are above its best ranked stack's: when
    there are any, the best ranked stack is only the best of those the load did not cap, and a
    headline naming it alone would crown a stack that served less. Highest first."""
    best = verdict.best.requests_per_second_median if verdict.best is not None else -math.inf
    values = [f.value for f in verdict.flags if f.kind == "set_by_load" and f.value is not None]
    return sorted((v for v in values if v > best), reverse=True)


def _capped(values: list[float]) -> str:
    """``9 stacks at the load's own ceiling (6 requests/s: set by the load, not ranked)``."""
    low, high = format_number(min(values), 0), format_number(max(values), 0)
    figure = high if low == high else f"{low}{DASH}{high}"
    stacks = f"{len(values)} stack{'s' if len(values) != 1 else ''}"
    return f"{stacks} at the load's own ceiling ({figure} requests/s: set by the load, not ranked)"


def format_where(verdict: Verdict) -> str:
    """``On /io at concurrency 64``, ``... at 960 requests/s offered``, ``... in a saturation search``."""
    if verdict.model == "closed":
        return f"On {verdict.endpoint} at concurrency {format_number(verdict.level, 0)}"
    if verdict.model == "open":
        return f"On {verdict.endpoint} at {format_number(verdict.level, 0)} requests/s offered"
    return f"On {verdict.endpoint}, in a saturation search"


def format_verdict(verdict: Verdict) -> str:
    """One sentence: who served most, and how the best ASGI and WSGI stacks compare."""
    where = format_where(verdict)
    best, wsgi, asgi = verdict.best, verdict.best_wsgi, verdict.best_asgi
    excluded = f" ({len(verdict.excluded)} stack(s) left out, see below)" if verdict.excluded else ""
    if best is None:
        return f"{where}, no stack produced a measurement that can be ranked{excluded}."
    if verdict.model != "saturation" and not best.requests_per_second_median > 0:
        return f"{where}, no stack had a successful request{excluded}."
    kind = f" ({best.interface.upper()})" if best.interface else ""
    served = "sustained" if verdict.model == "saturation" else "served"
    head = f"{where}, {best.target}{kind} {served} the most: {_requests_per_second(best)}{excluded}"
    capped = load_set_above(verdict)
    if capped:
        head = (
            f"{where}, {_capped(capped)}; of the stacks the load did not cap, {best.target}{kind} {served} "
            f"the most: {_requests_per_second(best)}{excluded}"
        )
    comparison = verdict.asgi_over_wsgi
    if comparison is None or wsgi is None or asgi is None:
        absent = "WSGI" if wsgi is None else "ASGI"
        return f"{head}; no {absent} stack could be ranked here, so there is no ASGI/WSGI ratio."
    ratio = format_ratio(comparison.ratio)
    if best is asgi:
        return f"{head}, {ratio} the best WSGI stack ({wsgi.target}, {_requests_per_second(wsgi)})."
    if best is wsgi:
        asgi_figure = _requests_per_second(asgi)
        return f"{head}; the best ASGI stack ({asgi.target}, {asgi_figure}) {served} {ratio} as many."
    return (
        f"{head}; the best ASGI stack ({asgi.target}, {_requests_per_second(asgi)}) {served} "
        f"{ratio} the best WSGI stack ({wsgi.target}, {_requests_per_second(wsgi)})."
    )


def format_ratios(verdict: Verdict) -> list[str]:
    """The ratios a verdict rests on, each with its interval (and what it is) and whether it is significant.

    ``ASGI/WSGI (fastapi-uvicorn / flask-gunicorn) = 41x [39-43], significant``.
    """
    lines = []
    asgi_wsgi = None
    if verdict.asgi_over_wsgi is not None and verdict.best_asgi and verdict.best_wsgi:
        asgi_wsgi = f"{verdict.best_asgi.target} / {verdict.best_wsgi.target}"
        lines.append(f"ASGI/WSGI ({asgi_wsgi}) = {format_comparison(verdict.asgi_over_wsgi)}")
    if verdict.lead is not None and verdict.best and verdict.runner_up:
        pair = f"{verdict.best.target} / {verdict.runner_up.target}"
        if pair != asgi_wsgi:  # the same two stacks: one line says it
            lines.append(f"best/runner-up ({pair}) = {format_comparison(verdict.lead)}")
    return lines


def format_spread(verdict: Verdict) -> str | None:
    """The repeats, intervals of the median (each saying what it is) and CVs behind a verdict's
    numbers; None when nothing was ranked."""
    shown = [s for s in (verdict.best, verdict.best_wsgi, verdict.best_asgi) if s is not None]
    unique = list({s.target: s for s in shown}.values())
    if not unique:
        return None
    parts = [
        f"{s.target} median of {s.n}, interval {format_interval(s.requests_per_second_interval, 0)}, "
        f"CV {format_percent(s.requests_per_second_cv)}"
        if s.n > 1
        else f"{s.target} single run, no interval"
        for s in unique
    ]
    return "Repeats: " + "; ".join(parts) + "."


def format_percent(fraction: float) -> str:
    """A fraction as a percentage: ``0.0123 -> "1.2%"``; NaN -> an en dash."""
    return DASH if _missing(fraction) else f"{100 * fraction:.1f}%"


def format_slo(slo: Slo) -> str:
    """``p99 ≤ 100 ms, errors ≤ 0.1%, achieved ≥ 95% of the offered rate``."""
    return (
        f"p99 \N{LESS-THAN OR EQUAL TO} {slo.p99_ms:g} ms, errors \N{LESS-THAN OR EQUAL TO} "
        f"{100 * slo.error_rate:g}%, achieved \N{GREATER-THAN OR EQUAL TO} "
        f"{100 * slo.min_achieved_ratio:g}% of the offered rate"
    )


def format_bound_reason(reason: BoundReason) -> str:
    """One :class:`~harness.model.BoundReason` in words, e.g. ``the generator used 93% CPU (limit 80%)``.

    The only place a bound reason becomes text (the report, the claims page and the terminal use it).
    """
    if reason.rule == "stored":
        return reason.detail or f"{reason.by} bound (no reason recorded)"
    if reason.rule == "behind":
        scheduled = reason.scheduled if reason.scheduled else reason.limit
        behind = 100 * (1 - reason.measured / scheduled) if scheduled else 0.0
        return (
            f"it sent {reason.measured:.1f} req/s, {behind:.0f}% behind the {scheduled:.1f} req/s "
            "scheduled, with connections to spare"
        )
    if reason.rule == "late":
        late = f"it sent requests {reason.measured:.0f} ms late at p99 (limit {reason.limit:.0f} ms)"
        return f"{late}: {reason.detail}" if reason.detail else late
    if reason.by == "upstream":
        return f"the upstream used {reason.measured:.0f}% CPU (limit {reason.limit:.0f}%)"
    if reason.processes and reason.processes > 1 and reason.limit == 80.0:
        return (
            f"one of its {reason.processes} driver processes used {reason.measured:.0f}% CPU "
            f"(limit {reason.limit:.0f}% each)"
        )
    return f"the generator used {reason.measured:.0f}% CPU (limit {reason.limit:.0f}%)"


def format_bound_reasons(reasons: Iterable[BoundReason]) -> str:
    """Several bound reasons in words, joined by semicolons; empty when there are none."""
    return "; ".join(format_bound_reason(reason) for reason in reasons)


def format_flag(flag: Flag) -> str:
    """A sentence saying what the flag means for the number it weakens."""
    t = flag.target
    value = flag.value if flag.value is not None else math.nan
    detail = f" ({format_bound_reasons(flag.reasons)})" if flag.reasons else ""
    if flag.kind == "single_run":
        return f"{t}: single run, no interval; repeat the run to know how stable this number is."
    if flag.kind == "not_significant":
        return (
            f"{t} vs {flag.other}: the 95% interval of their ratio ({format_ratio(value)}) includes 1, "
            "so the order between them is not settled."
        )
    if flag.kind == "errors":
        return f"{t}: {value:,.0f} failed requests at this level (requests/s counts successes only)."
    if flag.kind == "dropped":
        return f"{t}: {value:,.0f} requests could not even be sent (the connection cap was reached)."
    if flag.kind == "generator_bound":
        return (
            f"{t}: left out of the ranking: the load generator was the bottleneck{detail}, so its "
            f"{format_number(flag.value, 0)} requests/s is a floor, not the server's limit."
        )
    if flag.kind == "upstream_bound":
        return (
            f"{t}: left out of the ranking: the upstream service was the bottleneck{detail}, so its "
            f"{format_number(flag.value, 0)} requests/s is a floor, not the server's limit."
        )
    if flag.kind == "set_by_load":
        return (
            f"{t}: left out of the ranking: set by the load, not the stack: its "
            f"{format_number(flag.value, 0)} requests/s is the test's own ceiling (connections / declared "
            "wait) or the offered rate, served within the SLO, so it says nothing of the stack's limit."
        )
    if flag.kind == "littles_law":
        return (
            f"{t}: Little's law check failed: requests/s x mean latency = {value:.2f} x the concurrency "
            f"(expected {analysis.LITTLES_LAW_LOW}{DASH}{analysis.LITTLES_LAW_HIGH}); the driver's counts, "
            "clock or latencies disagree."
        )
    if flag.kind == "sync_ceiling":
        return (
            f"{t}: served more than its sync ceiling of {value:,.0f} requests/s (workers x threads / service "
            "time) allows: the stack's configuration or the measurement is not what it seems."
        )
    if flag.kind == "stalled":
        return (
            f"{t}: stopped answering for {value:.1f} s inside a window, far longer than its median "
            "response time (a paused, frozen or swapping server): its requests/s counts that stall."
        )
    if flag.kind == "split_repeats" and flag.split is not None:
        low = "/".join(format_number(v, 0) for v in flag.split.low)
        high = "/".join(format_number(v, 0) for v in flag.split.high)
        return (
            f"{t}: its repeats fall into two groups, {low} and {high} requests/s ({value:.1f}x apart): "
            "the median stands for one of two behaviours, not for a spread. A stack that sometimes "
            "runs one way and sometimes another (for example one worker taking every keep-alive "
            "connection) does this; more repeats tell which is usual."
        )
    if flag.kind == "none_held":
        return (
            f"{t}: in {value:,.0f} repeat(s) not even the lowest rate met the SLO (counted as 0 requests/s)."
        )
    if flag.kind == "never_broke":
        return (
            f"{t}: in {value:,.0f} repeat(s) the search reached its highest rate without breaking the SLO, "
            "so the capacity is a floor set by the search, not the stack: it is left out of the ranking."
        )
    return f"{t}: {value:,.0f} failed cell(s) at this level, excluded from the statistics."


def format_headline(verdicts: Sequence[Verdict]) -> str:
    """One line for the list of runs: the winner and the ASGI/WSGI ratio per endpoint."""
    parts = []
    for v in verdicts:
        if v.best is None:
            parts.append(f"{v.endpoint}: no measurement")
            continue
        level = {
            "closed": f" @ c{format_number(v.level, 0)}",
            "open": f" @ {format_number(v.level, 0)} req/s",
        }
        part = (
            f"{v.endpoint}{level.get(v.model, ' sustained')}: {v.best.target} {_requests_per_second(v.best)}"
        )
        capped = load_set_above(v)
        if capped:
            part = (
                f"{v.endpoint}{level.get(v.model, ' sustained')}: {_capped(capped)}; below it "
                f"{v.best.target} {_requests_per_second(v.best)}"
            )
        if v.asgi_over_wsgi is not None:
            part += f", ASGI/WSGI {format_comparison(v.asgi_over_wsgi)}"
        if v.flags:
            part += f" ({len(v.flags)} flag{'s' if len(v.flags) > 1 else ''})"
        parts.append(part)
    return "; ".join(parts) if parts else "no measurements"


def format_status(status: str) -> str:
    """A run's status in words: ``running`` is also what a killed run's manifest says, so it says both."""
    return "unfinished (still running, or killed)" if status == "running" else status


def format_time(iso: str | None) -> str:
    """``2024-06-01T12:00:05+00:00 -> "2024-06-01 12:00 UTC"``; unparsable text is returned as is."""
    if not iso:
        return DASH
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _signed_percent(ratio: float) -> str:
    if math.isinf(ratio):
        return "+\N{INFINITY}"
    change = 100 * (ratio - 1)
    return f"{change:+.0f}%" if abs(change) >= 10 else f"{change:+.1f}%"


def format_change(comparison: Comparison | None) -> str:
    """A ratio B/A as a change with its interval and what it is: ``-23% (-30% to -15%, 95% t-interval
    of the ratio of geometric means, 3 repeats each)``; ``+4.1%, no interval``."""
    if comparison is None or math.isnan(comparison.ratio):
        return DASH
    head = _signed_percent(comparison.ratio)
    interval = comparison.interval
    if interval is None:
        return f"{head}, no interval"
    what = f", {interval.method}" if interval.method else ""
    return f"{head} ({_signed_percent(interval.low)} to {_signed_percent(interval.high)}{what})"


def format_workload(summary: WorkloadSummary) -> str:
    """One sentence per workload kind, e.g. ``I/O-bound (2 endpoints): the best ASGI stack served
    5.2x to 41x what the best WSGI one did; ASGI ahead, significantly, on 2 of 2.``"""
    n = len(summary.compared) + summary.without_ratio
    head = f"{summary.kind} ({n} endpoint{'s' if n != 1 else ''})"
    if not summary.compared:
        return f"{head}: no endpoint had both a WSGI and an ASGI stack ranked, so there is no ratio."
    if summary.low == summary.high:
        served = format_ratio(summary.low)
    else:
        served = f"{format_ratio(summary.low)} to {format_ratio(summary.high)}"
    counts = []
    if summary.asgi_ahead:
        counts.append(f"ASGI ahead, significantly, on {summary.asgi_ahead} of {len(summary.compared)}")
    if summary.wsgi_ahead:
        counts.append(f"WSGI ahead, significantly, on {summary.wsgi_ahead} of {len(summary.compared)}")
    if summary.unsettled:
        why = "the interval includes 1, a difference under 2%, or a single run"
        counts.append(f"not settled on {summary.unsettled} ({why})")
    if summary.without_ratio:
        counts.append(f"no ratio on {summary.without_ratio} (a WSGI or ASGI stack could not be ranked)")
    return f"{head}: the best ASGI stack served {served} what the best WSGI one did; {'; '.join(counts)}."
