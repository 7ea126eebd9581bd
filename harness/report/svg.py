"""What every chart of a report shares: matplotlib settings, stack styles, labels, SVG text.

A stack keeps its colour in every chart and every run (:func:`stack_colours`:
each stack of ``targets/`` has its own, any other name one picked by the name);
WSGI stacks are dashed lines and hatched bars, ASGI stacks solid lines, so the
WSGI/ASGI split shows at a glance. Figures are built with :class:`matplotlib.figure.Figure`
rather than pyplot, so no global backend or figure registry is touched; text
stays text (``svg.fonttype = none``) and ids are salted with a fixed string, so
the same figure always gives the same bytes (:func:`svg_text`).
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator
from matplotlib.typing import RcKeyType

RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "gateway-bench",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.frameon": False,
}

# One colour per stack of targets/, the same in every run and chart. Paul Tol's muted
# palette (colour-blind safe, https://personal.sron.nl/~pault/), with his vibrant orange
# and blue and near-black for 12; lines also differ by style (WSGI dashed) and marker.
STACK_COLOURS: dict[str, str] = {
    "flask-gunicorn": "#222222",
    "flask-gunicorn-gthread": "#88ccee",
    "flask-gunicorn-gevent": "#44aa99",
    "flask-granian": "#999933",
    "django-gunicorn": "#882255",
    "fastapi-uvicorn": "#ee7733",
    "starlette-uvicorn": "#ddcc77",
    "fastapi-granian": "#117733",
    "quart-hypercorn": "#aa4499",
    "django-uvicorn": "#cc6677",
    "django-daphne": "#0077bb",
    "django-gunicorn-uvicornworker": "#332288",
}

# For any other name (the user's own app, a stack added later): matplotlib's tab10, none
# of which is a stack's colour above.
_OTHER_COLOURS = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
    "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
)  # fmt: skip


def stack_colours(names: Iterable[str]) -> dict[str, str]:
    """A colour per name: a stack's own (:data:`STACK_COLOURS`), else one picked by the name.

    Another name takes one of the ``_OTHER_COLOURS`` not yet taken (names in
    sorted order), picked by its CRC-32: the same in every run with the same
    names, and different from every other name's while colours are left.
    """
    wanted = set(names)
    colours = {name: STACK_COLOURS[name] for name in wanted if name in STACK_COLOURS}
    for name in sorted(wanted - set(colours)):
        start = zlib.crc32(name.encode())
        free = [c for c in _OTHER_COLOURS if c not in colours.values()] or list(_OTHER_COLOURS)
        colours[name] = free[start % len(free)]
    return colours


@dataclass(frozen=True)
class StackStyle:
    """How one stack is drawn: colour, line style, marker and bar hatch."""

    colour: str
    linestyle: str
    marker: str
    hatch: str | None


def stack_styles(interfaces: Mapping[str, str | None]) -> dict[str, StackStyle]:
    """A style per target name, in sorted-name order; its colour from :func:`stack_colours`.

    WSGI: dashed, square markers, hatched bars; ASGI: solid, round markers;
    anything else: dotted, triangles.
    """
    colours = stack_colours(interfaces)
    styles: dict[str, StackStyle] = {}
    for name in sorted(interfaces):
        colour = colours[name]
        interface = interfaces[name]
        if interface == "wsgi":
            styles[name] = StackStyle(colour, "--", "s", "///")
        elif interface == "asgi":
            styles[name] = StackStyle(colour, "-", "o", None)
        else:
            styles[name] = StackStyle(colour, ":", "^", "..")
    return styles


def label(name: str, interfaces: Mapping[str, str | None]) -> str:
    """A stack's name in a legend or on an axis, with its interface: ``flask-gunicorn (WSGI)``."""
    interface = interfaces.get(name)
    return f"{name} ({interface.upper()})" if interface else name


def svg_text(figure: Figure, prefix: str) -> str:
    """The figure as one ``<svg>`` element, every id in it prefixed with ``prefix`` (unique in the page)."""
    buffer = io.StringIO()
    with matplotlib.rc_context(RC):
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    # Several SVGs share one HTML document, where ids must be unique.
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", text)
    return re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', text)


NO_SUCCESS = "no successful requests"
"""What a chart of latency or throughput says where a stack, or every stack, has nothing to draw."""


def has_data(axes: Axes, *, positive: bool = False) -> bool:
    """Whether anything drawn in ``axes`` has a finite y value in data units (``positive``: one above 0).

    It reads the axes' data limits, which NaN values, empty lines and lines
    across the axes (``axvline``) leave alone.
    """
    limits = axes.dataLim
    if positive:
        return bool(np.isfinite(limits.minposy))
    return bool(np.isfinite(limits.y0) and np.isfinite(limits.y1))


def no_success(stack: pd.DataFrame) -> bool:
    """Whether none of a stack's measured summary rows (:func:`harness.analysis.summarise`) had a
    successful request.

    Latency is recorded for successful requests only, so a stack whose every
    row lacks a median p50 had none: charts name it in the legend as such
    (:func:`no_success_entry`) instead of drawing a line at zero.
    """
    return bool(stack["latency_ms_p50_median"].isna().all())


def no_success_entry(
    axes: Axes, name: str, style: StackStyle, interfaces: Mapping[str, str | None], why: str = NO_SUCCESS
) -> None:
    """A legend entry, with nothing drawn: ``flask-gunicorn (WSGI): no successful requests`` (or ``why``)."""
    axes.plot(
        [],
        [],
        color=style.colour,
        linestyle="none",
        marker="x",
        label=f"{label(name, interfaces)}: {why}",
    )


def note_instead(axes: Axes, note: str) -> None:
    """Write ``note`` in the middle of an axes with nothing to draw, and no y scale (it would be made up)."""
    axes.text(
        0.5, 0.5, note, transform=axes.transAxes, ha="center", va="center", color="#555555", fontsize=11
    )
    axes.set_yticks([])


def log_latency_axis(axes: Axes) -> None:
    """A log y axis of latencies with 1-2-5 ticks written as plain numbers.

    Latency is recorded for successful requests only, so an axes without a
    latency above 0 gets the note :data:`NO_SUCCESS` and a linear scale
    (a log scale of no positive value cannot be drawn).
    """
    if not has_data(axes, positive=True):
        note_instead(axes, NO_SUCCESS)
        return
    axes.set_yscale("log")
    # 1-2-5 ticks as plain numbers read better than 10^x over a narrow range.
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_locator(NullLocator())
