"""What every chart of a report shares: matplotlib settings, stack styles, labels, SVG text.

A stack keeps its colour in every chart (:func:`stack_styles`, from the sorted
target names); WSGI stacks are dashed lines and hatched bars, so the WSGI/ASGI
split shows at a glance. Figures are built with :class:`matplotlib.figure.Figure`
rather than pyplot, so no global backend or figure registry is touched; text
stays text (``svg.fonttype = none``) and ids are salted with a fixed string, so
the same figure always gives the same bytes (:func:`svg_text`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import matplotlib
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

_PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
    "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
)  # fmt: skip


@dataclass(frozen=True)
class StackStyle:
    """How one stack is drawn: colour, line style, marker and bar hatch."""

    colour: str
    linestyle: str
    marker: str
    hatch: str | None


def stack_styles(interfaces: Mapping[str, str | None]) -> dict[str, StackStyle]:
    """A style per target name, in sorted-name order (so stable across runs with the same stacks).

    WSGI: dashed, square markers, hatched bars; ASGI: solid, round markers;
    anything else: dotted, triangles.
    """
    styles: dict[str, StackStyle] = {}
    for index, name in enumerate(sorted(interfaces)):
        colour = _PALETTE[index % len(_PALETTE)]
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


def log_latency_axis(axes: Axes) -> None:
    """A log y axis of latencies with 1-2-5 ticks written as plain numbers."""
    axes.set_yscale("log")
    # 1-2-5 ticks as plain numbers read better than 10^x over a narrow range.
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_locator(NullLocator())
