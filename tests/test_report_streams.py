"""The report of a run with stream endpoints: the Streams section, and streams told apart from requests.

Real runs through the CLI against a sync WSGI stack (flask-gunicorn) and an ASGI one
(starlette-uvicorn), rendered by ``gwbench report``: SSE streams (beside a plain HTTP
endpoint, so that the page has both) and WebSocket echoes in the closed and the open model,
which the WSGI stack answers with 501. The page must tell streams in their own terms
(streams completed/s, time to first event, the gap between events against the interval
asked; messages/s and round trips, in the open model at each rate offered), show how many
streams a blocking stack holds at once and what happened above that, list a stack without
WebSocket support as not supported (never failed), and keep stream endpoints out of the
sections on requests. Every expected figure is read from the
stored measurements and manifest, never set by hand. The pages are also looked at in
headless Chromium at laptop and phone sizes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from chromium import Chromium, executable, launch
from conftest import REPO
from test_browser import LAPTOP, PHONE, TABLES, console_errors, look
from test_report import Page, figures, section

from harness.ceilings import blocking_request_slots
from harness.model import Measurement, RunManifest
from harness.report.formats import TIMES, format_number
from harness.report.svg import stack_styles
from harness.results import load_run

EVENTS, INTERVAL_MS = 5, 20
SSE_PATH = f"/stream/sse?events={EVENTS}&interval_ms={INTERVAL_MS}"

SSE = f"""
description = "SSE streams of {EVENTS} events {INTERVAL_MS} ms apart, beside a plain HTTP endpoint"
targets = ["flask-gunicorn", "starlette-uvicorn"]
endpoints = ["/json", {{ path = "{SSE_PATH}", kind = "sse" }}]
concurrency = [2, 8]
warmup_s = 0.2
duration_s = 1.0
timeout_s = 5.0
seed = 5
"""

WEBSOCKET = """
description = "WebSocket echo"
targets = ["flask-gunicorn", "starlette-uvicorn"]
endpoints = [{ path = "/ws/echo", kind = "websocket" }]
concurrency = [2]
warmup_s = 0.2
duration_s = 1.0
timeout_s = 5.0
seed = 5
"""

WEBSOCKET_OPEN = """
description = "WebSocket echo in the open model"
targets = ["flask-gunicorn", "starlette-uvicorn"]
endpoints = [{ path = "/ws/echo", kind = "websocket" }]
model = "open"
rates = [100.0, 400.0]
max_connections = 4
warmup_s = 0.2
duration_s = 1.0
timeout_s = 5.0
seed = 5
"""


def gwbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


@dataclass(frozen=True)
class Rendered:
    """A run made by ``gwbench run`` and its page rendered by ``gwbench report``."""

    run: subprocess.CompletedProcess[str]
    report: subprocess.CompletedProcess[str]
    manifest: RunManifest
    measurements: list[Measurement]
    page: Path
    html: str


def run_and_report(root: Path, name: str, text: str) -> Rendered:
    scenario = root / f"{name}.toml"
    scenario.write_text(text)
    results, reports = root / "results", root / "reports"
    run = gwbench("run", str(scenario), "--results", str(results), "--no-report")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    (run_dir,) = results.iterdir()
    report = gwbench("report", str(run_dir), "--results", str(results), "--reports", str(reports))
    manifest, measurements = load_run(run_dir)
    page = reports / run_dir.name / "index.html"
    return Rendered(run, report, manifest, measurements, page, page.read_text() if page.is_file() else "")


@pytest.fixture(scope="module")
def sse(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return run_and_report(tmp_path_factory.mktemp("sse"), "streams-sse", SSE)


@pytest.fixture(scope="module")
def websocket(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return run_and_report(tmp_path_factory.mktemp("websocket"), "streams-websocket", WEBSOCKET)


@pytest.fixture(scope="module")
def websocket_open(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return run_and_report(tmp_path_factory.mktemp("websocket-open"), "streams-websocket-open", WEBSOCKET_OPEN)


class Tables(HTMLParser):
    """Every table of some HTML: its class, headings and rows (each row's class and cell texts)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: list[dict[str, object]] = []
        self.rows: list[tuple[str, list[str]]] = []
        self.cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self.rows = []
            self.tables.append({"class": found.get("class") or "", "rows": self.rows})
        elif tag == "tr":
            self.rows.append((found.get("class") or "", []))
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1][1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def streams_table(html: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The Streams section's table: its headings and its rows (class, cells)."""
    (table,) = [t for t in Tables(section(html, "streams")).tables if t["class"] == "streams"]
    rows = table["rows"]
    assert isinstance(rows, list)
    (_, headings), *body = rows
    return headings, body


def named(rendered: Rendered, target: str) -> str:
    """How a stack is named in the Streams section: ``flask-gunicorn (WSGI)``."""
    return f"{target} ({rendered.manifest.targets[target].config.interface.upper()})"


def stream_path(rendered: Rendered) -> str:
    (path,) = [spec.path for spec in rendered.manifest.scenario.requests() if spec.kind != "http"]
    return path


def test_both_runs_render_through_gwbench_report(sse: Rendered, websocket: Rendered) -> None:
    for rendered in (sse, websocket):
        assert rendered.report.returncode == 0, rendered.report.stderr[-3000:]
        assert "Traceback" not in rendered.report.stderr
        assert f"report: {rendered.page}" in rendered.report.stdout
    # The WebSocket upgrade answered 501 is no failure: not of the run, not of the report.
    assert websocket.manifest.failures == ()
    assert "failure" not in websocket.run.stdout + websocket.run.stderr
    assert "warning" not in websocket.report.stdout + websocket.report.stderr


def test_the_streams_section_follows_the_verdict_and_is_in_the_navigation(
    sse: Rendered, websocket: Rendered
) -> None:
    # With an HTTP endpoint beside the stream, the sections on requests stay, after Streams.
    tail = ["cells", "stacks", "environment", "raw"]
    assert Page(sse.html).ids == ["verdict", "streams", "charts", "medians", *tail]
    # A run of streams only has no sections on requests.
    assert Page(websocket.html).ids == ["verdict", "streams", *tail]
    for rendered in (sse, websocket):
        nav = re.search(r"<nav.*?</nav>", rendered.html, re.S)
        assert nav and '<a href="#streams">2. Streams</a>' in nav.group(0)
        assert re.search(r"<h2>2\. Streams</h2>", rendered.html)


def test_the_sse_table_gives_each_stack_and_level_in_stream_terms(sse: Rendered) -> None:
    headings, rows = streams_table(sse.html)
    path = stream_path(sse)
    asked = f"(asked {path.rsplit('=', 1)[1]} ms)"
    assert headings[:10] == [
        "stack",
        "concurrent streams",
        "streams completed/s",
        "events/s",
        "first event p50 ms",
        "first event p99 ms",
        f"gap p50 ms {asked}",
        f"gap p99 ms {asked}",
        "completed",
        "failed",
    ]
    cells = [m for m in sse.measurements if m.endpoint == path]
    levels = sse.manifest.scenario.concurrency
    expected = {(target, level) for target in sse.manifest.targets for level in levels}
    assert {(m.target, m.concurrency) for m in cells} == expected
    by_row = {(row[0], row[1]): row for _, row in rows}
    assert len(by_row) == len(rows) == len(cells)
    for m in cells:
        assert m.workload == "sse" and m.status == "ok", m
        assert m.latency_ms is not None and m.inter_event_gap_ms is not None
        assert m.stream_events_per_second is not None and m.streams_completed is not None
        row = by_row[(named(sse, m.target), f"{m.concurrency:,}")]
        # One repeat: each median is the cell's own figure.
        assert row[2:10] == [
            format_number(m.requests_per_second),
            format_number(m.stream_events_per_second, 0),
            format_number(m.latency_ms.p50),
            format_number(m.latency_ms.p99),
            format_number(m.inter_event_gap_ms.p50),
            format_number(m.inter_event_gap_ms.p99),
            f"{m.streams_completed:,}",
            f"{m.errors.total:,}",
        ], (m.cell_id, row)


def test_a_sync_stack_says_how_many_streams_it_holds_and_what_happened_above(sse: Rendered) -> None:
    streams = section(sse.html, "streams")
    flask = sse.manifest.targets["flask-gunicorn"]
    slots = blocking_request_slots(flask)
    assert slots is not None and slots == flask.workers  # gunicorn sync: one thread per worker
    workers = f"{flask.workers} worker{'s' if flask.workers != 1 else ''}"
    holds = f"flask-gunicorn (WSGI) holds at most {slots} streams at once ({workers} {TIMES} 1 thread)"
    assert holds in streams
    assert "starlette-uvicorn (ASGI) holds" not in streams
    levels = sse.manifest.scenario.concurrency
    assert slots < max(levels)  # the top level asks for more streams than it holds
    assert f"Above {slots}, the other streams wait in its accept queue" in streams
    _, rows = streams_table(sse.html)
    flags = {(row[0], row[1]): row[-1] for _, row in rows}
    for level in levels:
        above = f"above the {slots} streams it holds" in flags[("flask-gunicorn (WSGI)", f"{level:,}")]
        assert above == (level > slots), level
        assert "holds" not in flags[("starlette-uvicorn (ASGI)", f"{level:,}")]


def test_the_sse_section_gives_each_stacks_capacity_in_streams_within_the_slo(sse: Rendered) -> None:
    streams = section(sse.html, "streams")
    slo = sse.manifest.scenario.slo
    head = f"Concurrent streams within the SLO (time to first event p99 &lt;= {slo.p99_ms:g} ms, errors"
    assert head in streams
    items = re.findall(r"<li><b>([^<]+)</b>: ([^<]+)</li>", streams.split('class="capacities"', 1)[1])
    assert sorted(target for target, _ in items) == sorted(sse.manifest.targets)
    levels = [f"{level:,}" for level in sse.manifest.scenario.concurrency]
    for target, words in items:
        # Bracketed by the levels measured: at least the highest held, below the first broken.
        level = "|".join(levels)
        assert re.match(rf"(at least ({level})|below ({level}))", words), (target, words)


def test_stream_charts_use_each_stacks_usual_style(sse: Rendered, websocket: Rendered) -> None:
    styles = stack_styles({name: run.config.interface for name, run in sse.manifest.targets.items()})
    sse_charts = section(sse.html, "streams")
    assert figures(sse_charts) == ["firstevent", "firstevent", "gaps", "events"]
    assert f"asked: {stream_path(sse).rsplit('=', 1)[1]} ms apart" in sse_charts
    assert "concurrent streams (closed model)" in sse_charts
    for chart in re.findall(r'<figure class="[a-z]+".*?</figure>', sse_charts, re.S):
        for name, dashed in (("flask-gunicorn", True), ("starlette-uvicorn", False)):
            strokes = re.findall(rf'style="[^"]*stroke: {styles[name].colour}[^"]*"', chart)
            assert strokes, (name, chart[:120])
            assert any("stroke-dasharray" in s for s in strokes) == dashed, name
    ws_charts = section(websocket.html, "streams")
    assert figures(ws_charts) == ["roundtrip", "messages"]
    assert ws_charts.count("flask-gunicorn (WSGI): not supported (answers 501)") >= 2  # each legend


def test_stream_endpoints_are_left_out_of_the_sections_on_requests(sse: Rendered) -> None:
    html, path = sse.html, stream_path(sse)
    (plain,) = [e for e in sse.manifest.scenario.endpoints if isinstance(e, str)]
    for name in ("charts", "medians"):
        part = section(html, name)
        assert plain in part and path.replace("&", "&amp;") not in part, name
    verdict = section(html, "verdict")
    escaped = re.escape(path.replace("&", "&amp;"))
    (stream_sentence,) = re.findall(rf'<p class="verdict">(On {escaped} .*?)</p>', verdict, re.S)
    assert "first event p99" in stream_sentence and "requests/s" not in stream_sentence
    assert re.search(rf'<p class="verdict">On {re.escape(plain)} at concurrency ', verdict)
    cells = Tables(section(html, "cells")).tables
    requests, streams = cells[0]["rows"], cells[1]["rows"]
    assert isinstance(requests, list) and isinstance(streams, list)
    assert {row[1] for _, row in requests[1:]} == {plain}
    assert {row[1] for _, row in streams[1:]} == {path}
    assert streams[0][1][4:6] == ["streams/s", "events/s"]


def test_a_stack_without_websocket_support_is_not_supported_never_failed(websocket: Rendered) -> None:
    flask = [m for m in websocket.measurements if m.target == "flask-gunicorn"]
    assert flask and {m.status for m in flask} == {"unsupported"}
    html = websocket.html
    headings, rows = streams_table(html)
    assert headings[:5] == ["stack", "connections", "messages/s", "round trip p50 ms", "round trip p99 ms"]
    by_row = {(row[0], row[1]): (kind, row) for kind, row in rows}
    for m in flask:
        kind, row = by_row[("flask-gunicorn (WSGI)", f"{m.concurrency:,}")]
        assert kind == "unsupported" and row[-1] == "not supported (answers 501)"
    starlette = [m for m in websocket.measurements if m.target == "starlette-uvicorn"]
    for m in starlette:
        assert m.status == "ok" and m.latency_ms is not None
        _, row = by_row[("starlette-uvicorn (ASGI)", f"{m.concurrency:,}")]
        assert row[2:5] == [
            format_number(m.requests_per_second, 0),
            format_number(m.latency_ms.p50),
            format_number(m.latency_ms.p99),
        ]
    assert 'class="failed"' not in html
    assert "flask-gunicorn (WSGI): not supported (answers 501)" in section(html, "verdict")
    unsupported = sum(m.status == "unsupported" for m in websocket.measurements)
    assert "0 failed cell(s)" in section(html, "cells") and f"{unsupported} cell(s) not supported" in html
    environment = section(html, "environment")
    assert re.search(r"<h3>Run failures</h3>\s*<p class=\"muted\">None.</p>", environment)


def test_the_list_of_runs_tells_streams_in_their_own_terms(sse: Rendered, websocket: Rendered) -> None:
    index = (websocket.page.parent.parent / "index.html").read_text()
    top = max(websocket.manifest.scenario.concurrency)
    figures = r"[\w-]+ [\d,]+ messages/s, round trip p99 [\d.,]+ ms"
    assert re.search(rf"/ws/echo @ c{top}: {figures}; 1 of 2 stacks not supported", index), index
    index = (sse.page.parent.parent / "index.html").read_text()
    escaped = re.escape(stream_path(sse).replace("&", "&amp;"))
    top = max(sse.manifest.scenario.concurrency)
    assert re.search(rf"{escaped} @ {top} streams: first event p99 [\d.,]+ ms \([\w-]+\)", index), index


def test_an_open_model_websocket_endpoint_is_told_at_the_rate_offered(websocket_open: Rendered) -> None:
    rendered = websocket_open
    assert rendered.report.returncode == 0 and "Traceback" not in rendered.report.stderr
    assert rendered.manifest.failures == ()
    html = rendered.html
    headings, rows = streams_table(html)
    columns = ["messages/s", "round trip p50 ms", "round trip p99 ms", "dropped", "failed"]
    assert headings[:7] == ["stack", "messages/s offered", *columns]
    by_row = {(row[0], row[1]): (kind, row) for kind, row in rows}
    rates = rendered.manifest.scenario.rates
    assert len(by_row) == len(rows) == 2 * len(rates)
    for m in rendered.measurements:
        assert m.model == "open" and m.rate in rates and m.concurrency is None, m
        kind, row = by_row[(named(rendered, m.target), format_number(m.rate, 0))]
        if m.target == "flask-gunicorn":
            assert m.status == "unsupported" and kind == "unsupported"
            assert row[-1] == "not supported (answers 501)"
            continue
        assert m.status == "ok" and m.latency_ms is not None, m
        assert row[2:7] == [
            format_number(m.requests_per_second, 0),
            format_number(m.latency_ms.p50),
            format_number(m.latency_ms.p99),
            f"{m.dropped:,}",
            f"{m.errors.total:,}",
        ], (m.cell_id, row)
    streams = section(html, "streams")
    assert "intended send time" in streams and "The level is the rate offered, in messages/s" in streams
    assert figures(streams) == ["roundtrip", "messages"]
    assert "messages/s offered (open model)" in streams and "offered rate" in streams
    top = format_number(max(rates), 0)
    assert re.search(rf'<p class="verdict">On /ws/echo at {top} messages/s offered, starlette-uvicorn', html)
    tables = [t["rows"] for t in Tables(section(html, "cells")).tables]
    (heading,) = [rows[0][1] for rows in tables if isinstance(rows, list) and "dropped" in rows[0][1]]
    assert heading[2] == "messages/s offered" and heading[-2] == "dropped"
    index = (rendered.page.parent.parent / "index.html").read_text()
    figures_said = r"starlette-uvicorn [\d,]+ messages/s, round trip p99 [\d.,]+ ms"
    said = rf"/ws/echo @ {top} messages/s offered: {figures_said}; 1 of 2 stacks not supported"
    assert re.search(said, index), index
    # The terminal's verdict says the same, and each cell's line gives the rate offered.
    assert f"/ws/echo @ {top} messages/s offered" in rendered.run.stdout
    lines = [line for line in rendered.run.stderr.splitlines() if "starlette-uvicorn" in line]
    for rate in rates:
        assert any(f"{format_number(rate, 0)} messages/s offered" in line for line in lines), lines


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    binary = executable()
    if binary is None:
        pytest.fail("Chromium is not installed (apt-get install -y chromium): the browser tests need it")
    with launch(binary, tmp_path_factory.mktemp("chromium")) as running:
        yield running


@pytest.mark.parametrize("name", ["sse", "websocket"])
def test_the_streams_section_as_a_person_sees_it(
    browser: Chromium, request: pytest.FixtureRequest, name: str, tmp_path: Path
) -> None:
    rendered: Rendered = request.getfixturevalue(name)
    url = rendered.page.as_uri() + "#streams"
    page, seen = look(browser, url, LAPTOP)
    browser.screenshot(page, tmp_path / f"{name}-laptop.png")
    assert not console_errors(page.events)
    kinds = ("firstevent", "gaps", "events", "roundtrip", "messages")
    streams = [svg for svg in seen["svgs"] if svg["label"].startswith(kinds)]
    assert streams
    for svg in streams:
        assert svg["visible"] and svg["width"] > 50 and svg["height"] > 50 and svg["drawn"] > 10, svg
    assert "Streams" in seen["firstScreen"]
    phone, on_phone = look(browser, url, PHONE, mobile=True)
    browser.screenshot(phone, tmp_path / f"{name}-phone.png")
    assert not console_errors(phone.events)
    assert on_phone["overflow"] <= 1, f"the page scrolls sideways by {on_phone['overflow']} px on a phone"
    for svg in on_phone["svgs"]:
        assert 50 < svg["width"] <= PHONE[0], svg
    for table in browser.evaluate(phone, TABLES):
        assert table["scrolls"] and table["right"] <= PHONE[0], table
        if table["wider"]:
            assert table["firstLeft"] <= 1, f"the first column scrolls out of view: {table}"
            assert table["firstWidth"] <= 0.5, f"the first column takes most of the screen: {table}"
