"""Every generated page as a person sees it, in headless Chromium (Debian's ``chromium``).

Pages: a run report (closed model), a run report with errors (open model), the
list of runs, the claims page and a run comparison, rendered from stored runs as
the CLI renders them. Each is opened at laptop size and at phone size; the test
checks there is no console error, no request leaves the page's own files (every
src and href is inline or relative, and every relative link leads to a file),
every chart is an SVG with a non-zero size in the layout and something drawn in
it, the page does not scroll sideways on a phone (a table wider than the
screen scrolls in its own box, its first column staying in view, even scrolled
to its last column), and the first screen shows what the page is for.
Screenshots at 1366 and 390 px wide are saved in the test's temporary folder.

Chromium is required: without it the tests fail, they do not skip.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from cells import cell, target
from chromium import Chromium, Page, executable, launch
from test_claims import SHIPPED
from test_report import CLOSED, OPEN, closed_measurements, open_measurements, write_run

from harness.compare import compare_runs
from harness.report import write_reports
from harness.report.claims import write_claims_page
from harness.report.compare import write_compare_page
from harness.results import load_run

# What the page shows, measured in the browser's own layout.
INSPECT = r"""
(() => {
  const svgs = [...document.querySelectorAll("svg")].filter(s => !s.parentElement.closest("svg")).map(s => {
    const box = s.getBoundingClientRect();
    const style = getComputedStyle(s);
    return {
      label: (s.closest("figure") || s).getAttribute("aria-label") || "",
      width: box.width, height: box.height,
      visible: style.display !== "none" && style.visibility !== "hidden" && Number(style.opacity) > 0,
      drawn: s.querySelectorAll("path, rect, line, polyline, polygon, text, use").length,
    };
  });
  const links = [];
  for (const element of document.querySelectorAll("*")) {
    for (const name of element.getAttributeNames()) {
      if (/^(src|href|xlink:href|action|poster|srcset)$/.test(name)) links.push(element.getAttribute(name));
    }
  }
  const firstScreen = [...document.querySelectorAll("h1, h2, h3, p, th, td, li")]
    .filter(e => {
      const b = e.getBoundingClientRect();
      return b.top < innerHeight && b.bottom > 0 && b.height > 0;
    })
    .map(e => e.innerText.trim()).filter(Boolean).join("\n");
  return {
    svgs, links, firstScreen,
    overflow: document.documentElement.scrollWidth - innerWidth,
    title: document.title,
  };
})()
"""

# Each table scrolled to its right end, as a person on a phone would to read its last columns.
TABLES = r"""
(() => [...document.querySelectorAll("table")].map(table => {
  const box = table.parentElement;
  box.scrollLeft = box.scrollWidth;
  const inner = box.getBoundingClientRect();
  const firsts = [...table.rows].map(row => row.cells[0]).filter(Boolean).map(c => c.getBoundingClientRect());
  const caption = table.caption ? table.caption.getBoundingClientRect().width : 0;
  return {
    table: (table.className || table.rows[0].innerText).slice(0, 60),
    scrolls: getComputedStyle(box).overflowX === "auto",
    wider: box.scrollWidth > box.clientWidth + 1,
    right: inner.right,
    // Where the first column is once scrolled: at the box's left edge when it stays in view.
    firstLeft: Math.max(...firsts.map(r => Math.abs(r.left - inner.left))),
    firstWidth: Math.max(...firsts.map(r => r.width)) / inner.width,
    caption,
  };
}))()
"""

LAPTOP = (1366, 900)
PHONE = (390, 844)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every kind of page, written as the CLI writes them, from stored runs."""
    root = tmp_path_factory.mktemp("site")
    results, reports = root / "results", root / "reports"
    closed = write_run(results, CLOSED, closed_measurements())
    open_run = write_run(results, OPEN, open_measurements())
    slower = write_run(
        results,
        CLOSED.model_copy(update={"name": "closed-slower"}),
        [
            m.model_copy(update={"requests_per_second": m.requests_per_second * 0.7})
            for m in closed_measurements()
        ],
    )
    claim = SHIPPED["granian-sleep-100ms"]
    endpoint = claim.scaled.endpoint
    claim_run = write_run(
        results,
        claim.scenario(quick=True),
        [
            cell(
                name, endpoint=endpoint, concurrency=64, repeat=r, requests_per_second=requests_per_second + r
            )
            for r in range(3)
            for name, requests_per_second in (("fastapi-uvicorn", 610.0), ("flask-gunicorn", 9.6))
        ],
        {
            "fastapi-uvicorn": target("fastapi-uvicorn", "asgi", workers=1),
            "flask-gunicorn": target("flask-gunicorn", "wsgi", workers=1),
        },
    )
    pages = {
        "run": write_reports(closed, reports),
        "run-with-errors": write_reports(open_run, reports),
    }
    write_reports(slower, reports)
    write_reports(claim_run, reports)
    pages["claims"] = write_claims_page(SHIPPED, results, reports)
    comparison = compare_runs(load_run(closed), load_run(slower))
    pages["compare"] = write_compare_page(comparison, [], reports, results)
    pages["index"] = reports / "index.html"
    return pages


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    binary = executable()
    if binary is None:
        pytest.fail("Chromium is not installed (apt-get install -y chromium): the browser tests need it")
    with launch(binary, tmp_path_factory.mktemp("chromium")) as running:
        yield running


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions and the browser's own error log entries (failed loads)."""
    found = []
    for event in events:
        params = event.get("params", {})
        if event["method"] == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            )
        elif event["method"] == "Runtime.exceptionThrown":
            found.append(str(params.get("exceptionDetails", {}).get("text")))
        elif event["method"] == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            found.append(f"{params['entry'].get('text')} ({params['entry'].get('url', '')})")
    return found


def requested(events: list[dict[str, Any]]) -> list[str]:
    return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]


def leaves_the_page(link: str) -> bool:
    """True for a link with a scheme or a host (``https://``, ``//cdn``, ``mailto:``); ``data:`` is inline."""
    return bool(re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|//)", link.strip())) and not link.startswith("data:")


def dead_links(page: Path, links: list[str]) -> list[str]:
    """Relative links (fragments aside) that lead to no file."""
    dead = []
    for link in links:
        path = unquote(urlsplit(link).path)
        if not path or leaves_the_page(link):
            continue
        if not (page.parent / path).exists():
            dead.append(link)
    return dead


# The charts each page must show (at least), and the words its first screen must show.
EXPECTED: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "run": (
        {"throughput on /io/sleep?ms=50", "latency on /io/sleep?ms=50", "spectrum on /io/sleep?ms=50"},
        ("Gateway Bench run", "1. Verdict", "WSGI vs ASGI, by workload", "served the most"),
    ),
    "run-with-errors": (
        {"throughput on /io/upstream?ms=50", "errors on /io/upstream?ms=50"},
        ("Gateway Bench run", "1. Verdict"),
    ),
    "claims": (set(), ("Published claims, checked", "Summary", "granian-sleep-100ms", "not comparable")),
    "compare": (set(), ("against", "regression(s)")),
    "index": (set(), ("Gateway Bench runs", "Published claims, checked against measurement")),
}


def look(
    browser: Chromium, url: str, size: tuple[int, int], *, mobile: bool = False
) -> tuple[Page, dict[str, Any]]:
    page = browser.new_page(*size, mobile=mobile)
    browser.open(page, url)
    return page, browser.evaluate(page, INSPECT)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_page_as_a_person_sees_it(
    browser: Chromium, site: dict[str, Path], name: str, tmp_path: Path
) -> None:
    path = site[name]
    charts, first_words = EXPECTED[name]
    page, seen = look(browser, path.as_uri(), LAPTOP)
    browser.screenshot(page, tmp_path / f"{name}-laptop.png")

    assert not console_errors(page.events)
    assert [
        url for url in requested(page.events) if leaves_the_page(url) and not url.startswith("file:")
    ] == []
    assert [link for link in seen["links"] if leaves_the_page(link)] == []
    assert dead_links(path, seen["links"]) == []
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", path.read_text()), "a stylesheet loads from outside"

    for svg in seen["svgs"]:
        assert svg["visible"] and svg["width"] > 50 and svg["height"] > 50, svg
        assert svg["drawn"] > 10, svg
    assert charts <= {svg["label"] for svg in seen["svgs"]}
    for words in first_words:
        assert words in seen["firstScreen"], f"{words!r} not on the first screen:\n{seen['firstScreen']}"

    phone, on_phone = look(browser, path.as_uri(), PHONE, mobile=True)
    browser.screenshot(phone, tmp_path / f"{name}-phone.png")
    assert not console_errors(phone.events)
    assert on_phone["overflow"] <= 1, f"{name} scrolls sideways by {on_phone['overflow']} px on a phone"
    for svg in on_phone["svgs"]:
        assert 50 < svg["width"] <= PHONE[0], svg
    tables = browser.evaluate(phone, TABLES)
    browser.screenshot(phone, tmp_path / f"{name}-phone-tables-scrolled.png")
    for table in tables:
        assert table["scrolls"] and table["right"] <= PHONE[0], table
        assert table["caption"] <= PHONE[0], f"a caption as wide as its table: {table}"
        if table["wider"]:
            assert table["firstLeft"] <= 1, f"the first column scrolls out of view: {table}"
            assert table["firstWidth"] <= 0.5, f"the first column takes most of the screen: {table}"
    assert browser.evaluate(phone, "document.documentElement.scrollWidth - innerWidth") <= 0
    assert (tmp_path / f"{name}-laptop.png").stat().st_size > 10_000
