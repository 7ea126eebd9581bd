"""The scenario: a load description (``scenarios/<name>.toml``) and its endpoint tables.

:class:`Scenario` checks its levels against its load model and its stages
(:mod:`harness.model.stages`); :class:`RequestSpec` is one kind of request when a
plain GET path is not enough. Both are frozen pydantic models with an explicit
JSON round trip. This module imports only :mod:`harness.model.config` and
:mod:`harness.model.stages`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError

from harness.model.config import (
    MAX_CONCURRENCY,
    MAX_CPUS,
    MAX_DURATION_S,
    MAX_LEVELS,
    MAX_MEMORY_MIB,
    MAX_RATE,
    MAX_REPEATS,
    MAX_WORKERS,
    QUICK_BISECT_STEPS,
    QUICK_FACTOR,
    QUICK_MAX_WINDOW_S,
    QUICK_MIN_WARMUP_S,
    QUICK_MIN_WINDOW_S,
    Cell,
    DriverName,
    Frozen,
    LoadModel,
    Saturation,
    Slo,
    cell_slug,
)
from harness.model.stages import Phase, Stage, phases


def is_path(value: str) -> str:
    """``value`` if it is an endpoint path (``/`` then printable ASCII, no spaces); raises ValueError."""
    # The endpoint goes verbatim into the request line: "GET <endpoint> HTTP/1.1".
    if not re.fullmatch(r"/[!-~]*", value):
        raise ValueError("must be a path starting with '/', printable ASCII without spaces")
    return value


def is_folder_name(value: str) -> str:
    """``value`` if it can name a results folder (letters, digits, ``.``, ``_``, ``-``); raises ValueError."""
    # The scenario's name is part of the results folder's name.
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
        raise ValueError(
            "must be letters, digits, '.', '_' or '-' (it names the results folder; default: the file's name)"
        )
    return value


def is_header_value(value: str) -> str:
    """``value`` if it can be sent as a header's value (printable ASCII, no line break); raises ValueError."""
    # It goes verbatim into the request: a line break would start a header of the file's choosing.
    if not re.fullmatch(r"[!-~]([ -~]*[!-~])?", value):
        raise ValueError("must be printable ASCII without line breaks or spaces at either end")
    return value


def is_status(value: int) -> int:
    """``value`` if it is an HTTP status (100-599); raises ValueError."""
    if not 100 <= value <= 599:
        raise ValueError("must be an HTTP status from 100 to 599")
    return value


_Endpoint = Annotated[str, AfterValidator(is_path)]


EndpointKind = Literal["http", "sse", "websocket", "idle-http", "idle-websocket"]
STREAM_KINDS = ("sse", "websocket")
IDLE_KINDS = ("idle-http", "idle-websocket")
"""Connections held idle (harness.idle): memory per connection and connections held, no throughput."""
DEFAULT_MESSAGE_BYTES = 64
"""A WebSocket endpoint's message size when its table gives none (bytes)."""


def sse_parameters(path: str) -> tuple[str, int, int]:
    """An SSE endpoint's path split as the driver asks for it: ``(path, events, interval_ms)``.

    ``/stream/sse?events=50&interval_ms=30`` -> ``("/stream/sse", 50, 30)``. Raises
    ValueError unless the query is exactly ``events`` (1-1000) and ``interval_ms`` (0-10000),
    in either order.
    """
    base, _, query = path.partition("?")
    pairs = dict(part.partition("=")[::2] for part in query.split("&") if part)
    if set(pairs) != {"events", "interval_ms"} or not all(v.isdigit() for v in pairs.values()):
        raise ValueError(
            "an sse endpoint's query must be events=N&interval_ms=M: /stream/sse?events=50&interval_ms=30"
        )
    events, interval_ms = int(pairs["events"]), int(pairs["interval_ms"])
    if not 1 <= events <= 1000 or not 0 <= interval_ms <= 10_000:
        raise ValueError("an sse endpoint asks for 1 to 1000 events, 0 to 10000 ms apart")
    return base, events, interval_ms


class RequestSpec(Frozen):
    """One kind of request in a scenario, when a plain GET path is not enough.

    ``body`` is sent as is with ``content_type`` (``body_file``, a path relative
    to the scenario file, is read into ``body`` when the scenario is loaded).
    ``weight`` is its share of a ``mix``. ``name`` labels it in results
    (default: the path, or ``"POST /path"`` for another method). ``status`` is
    the one HTTP status that counts as its success (e.g. 302 for a redirect);
    by default any 2xx does. Every other status is an error.

    ``kind`` streams instead of asking (native driver, closed model; each level is
    that many connections): ``sse`` reads Server-Sent Event streams from a path
    whose query is ``events=N&interval_ms=M`` (:func:`sse_parameters`), opening the
    next stream when one ends (:mod:`harness.load.stream.sse`); ``websocket`` opens
    WebSockets on the path and echoes ``message_bytes``-byte text messages, one in
    flight per connection (:mod:`harness.load.stream.websocket`; default
    :data:`DEFAULT_MESSAGE_BYTES`), or in the open model messages arriving at each
    of the scenario's rates (messages/s) over ``max_connections`` WebSockets
    (:mod:`harness.load.stream.wsopen`). ``idle-http`` and ``idle-websocket`` hold that many
    connections idle (each HTTP one after one GET of the path, answered and kept alive;
    each WebSocket opened on the path) and read the stack's memory before and during the
    hold (:mod:`harness.idle`): the scenario's warm-up is the settling time before the
    reading, its window the hold. All are GETs without a body.
    """

    path: _Endpoint
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    body: str | None = None
    body_file: str | None = None
    content_type: Annotated[str, AfterValidator(is_header_value)] = "application/json"
    weight: StrictInt = Field(default=1, ge=1, le=1000)
    name: str | None = Field(default=None, min_length=1)
    status: Annotated[StrictInt, AfterValidator(is_status)] | None = None
    kind: EndpointKind = "http"
    message_bytes: StrictInt | None = Field(default=None, ge=1, le=16 << 20)

    @model_validator(mode="after")
    def _stream_is_a_get(self) -> RequestSpec:
        if self.message_bytes is not None and self.kind != "websocket":
            raise PydanticCustomError(
                "stream", "{key}: only a websocket endpoint sends messages", {"key": "message_bytes"}
            )
        if self.kind == "http":
            return self
        if self.method != "GET" or self.body is not None or self.body_file is not None or self.status:
            raise PydanticCustomError(
                "stream",
                "{key}: an {kind} endpoint is a GET without a body or a declared status",
                {"key": "kind", "kind": self.kind},
            )
        if self.kind == "sse":
            try:
                sse_parameters(self.path)
            except ValueError as exc:
                why = {"key": "path", "why": str(exc)}
                raise PydanticCustomError("stream", "{key}: {why}", why) from None
        return self

    @property
    def label(self) -> str:
        """How results name it: ``name``, else the path (GET) or ``"METHOD path"``."""
        if self.name:
            return self.name
        return self.path if self.method == "GET" else f"{self.method} {self.path}"


def _entry_kind(value: object) -> str | None:
    if isinstance(value, str):
        return "<path>"
    if isinstance(value, dict | RequestSpec):
        return "<table>"
    return None


# An endpoint is a GET path or a table; the tags (dropped from error locations) pick which.
_EndpointEntry = Annotated[
    Annotated[_Endpoint, Tag("<path>")] | Annotated[RequestSpec, Tag("<table>")],
    Discriminator(
        _entry_kind,
        custom_error_type="endpoint",
        custom_error_message="must be a path or a table with a path",
    ),
]


def _time_scaled(path: str, scale: float) -> str:
    """``/io/upstream?ms=300`` at scale 0.1 is ``/io/upstream?ms=30`` (every ``ms=`` and ``interval_ms=``)."""
    if scale == 1.0:
        return path
    return re.sub(
        r"(?<=[?&])((?:interval_)?ms=)(\d+)", lambda m: f"{m.group(1)}{round(int(m.group(2)) * scale)}", path
    )


class Scenario(Frozen):
    """A load description, as in ``scenarios/<name>.toml``.

    Durations are in seconds, rates in requests/s. ``targets`` empty means
    every target that has a ``target.toml`` (the upstream service excluded).
    ``workers``, ``cpus`` (cores of CPU time) and ``memory_mib`` (MiB) override a
    target's ``default_workers``, ``cpus`` and ``memory_mib`` by name, up to
    :data:`MAX_WORKERS`, :data:`MAX_CPUS` and :data:`MAX_MEMORY_MIB`.

    Numbers are strict: ``true`` is not a level, nor ``2.0`` a count. Each level
    (``concurrency``, ``rates``) and endpoint names one cell: one listed twice
    (``[8, 8]``, or rates 100 and 100.0) is refused. At most :data:`MAX_LEVELS`
    levels, endpoints or stages.

    ``endpoints`` are GET paths or :class:`RequestSpec` tables (method, body,
    weight); each is measured on its own, unless ``mix`` names them all as one
    weighted mix measured as a single endpoint of that name. ``time_scale``
    multiplies every ``ms=`` and ``interval_ms=`` wait in the paths (0.1 runs a
    300 ms wait as 30 ms), so a slow workload can run at a fraction of its delays.

    ``model``: ``closed`` runs each level of ``concurrency`` (connections, each
    sending its next request when the previous answer arrives); ``open`` runs
    each of ``rates`` with ``arrival`` inter-arrival times and at most
    ``max_connections`` connections; ``saturation`` searches the highest open-
    model rate that meets ``slo`` (see :class:`Saturation`). ``driver`` is the
    load generator (``wrk`` and ``locust``: closed model only);
    ``generator_processes`` is how many driver processes (one event loop each,
    or Locust processes) share the load.

    ``stages`` (:mod:`harness.model.stages`) replace the levels with one continuous
    load that changes over time (constant, ramp, step, spike, soak), closed or
    open model, native driver; ``duration_s`` is then their total (filled in
    when omitted).

    ``database``: start PostgreSQL for the targets (its URL in ``GWBENCH_DATABASE_URL``)
    even when no endpoint is under ``/db/`` (the contract's queries): your own app's.

    ``target_requests_per_second`` is the load the cost is worked out for (the cores and GiB
    each stack needs to serve it within the SLO, :mod:`harness.cost`); default 10,000.

    ``smoke_window_max_s`` (s), set by :meth:`quick`, lets a closed-model cell (or a
    capacity search's closed-model probe) be measured again with a window of up to
    that length when its window was too short to answer (None: never); a scenario
    file cannot set it.
    """

    name: Annotated[str, Field(max_length=100), AfterValidator(is_folder_name)]
    description: str
    targets: tuple[str, ...] = ()
    endpoints: tuple[_EndpointEntry, ...] = Field(min_length=1, max_length=MAX_LEVELS)
    mix: str | None = Field(default=None, min_length=1)
    time_scale: StrictFloat = Field(default=1.0, gt=0, le=100, allow_inf_nan=False)
    model: LoadModel = "closed"
    concurrency: tuple[Annotated[StrictInt, Field(ge=1, le=MAX_CONCURRENCY)], ...] = Field(
        default=(), max_length=MAX_LEVELS
    )
    rates: tuple[Annotated[StrictFloat, Field(gt=0, le=MAX_RATE, allow_inf_nan=False)], ...] = Field(
        default=(), max_length=MAX_LEVELS
    )
    arrival: Literal["uniform", "poisson"] = "poisson"
    max_connections: StrictInt = Field(default=1000, ge=1, le=MAX_CONCURRENCY)
    saturation: Saturation = Field(default_factory=Saturation)
    slo: Slo = Field(default_factory=Slo)
    driver: DriverName = "native"
    generator_processes: StrictInt = Field(default=1, ge=1, le=64)
    warmup_s: StrictFloat = Field(ge=0, le=MAX_DURATION_S, allow_inf_nan=False)
    duration_s: StrictFloat = Field(gt=0, le=MAX_DURATION_S, allow_inf_nan=False)
    repeats: StrictInt = Field(default=1, ge=1, le=MAX_REPEATS)
    timeout_s: StrictFloat = Field(default=10.0, gt=0, le=MAX_DURATION_S, allow_inf_nan=False)
    database: StrictBool = False
    workers: dict[str, Annotated[StrictInt, Field(ge=1, le=MAX_WORKERS)]] = Field(default_factory=dict)
    cpus: dict[str, Annotated[StrictFloat, Field(gt=0, le=MAX_CPUS, allow_inf_nan=False)]] = Field(
        default_factory=dict
    )
    memory_mib: dict[str, Annotated[StrictInt, Field(ge=32, le=MAX_MEMORY_MIB)]] = Field(default_factory=dict)
    seed: StrictInt | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    target_requests_per_second: StrictFloat = Field(
        default=10_000.0, gt=0, le=MAX_RATE * 1000, allow_inf_nan=False
    )
    stages: tuple[Stage, ...] = Field(default=(), max_length=MAX_LEVELS)
    smoke_window_max_s: StrictFloat | None = Field(
        default=None, gt=0, le=MAX_DURATION_S, allow_inf_nan=False, json_schema_extra={"set_by": "--quick"}
    )

    @model_validator(mode="before")
    @classmethod
    def _duration_from_stages(cls, data: Any) -> Any:
        if isinstance(data, dict) and "duration_s" not in data and isinstance(data.get("stages"), list):
            durations = [s.get("duration_s") for s in data["stages"] if isinstance(s, dict)]
            if durations and all(isinstance(d, int | float) and d > 0 for d in durations):
                data = {**data, "duration_s": round(sum(float(d or 0) for d in durations), 6)}
        return data

    @model_validator(mode="after")
    def _stages_match_the_model(self) -> Scenario:
        if not self.stages:
            return self
        if self.model == "saturation" or self.concurrency or self.rates:
            raise PydanticCustomError(
                "levels",
                "{key}: stages set the load over time: no concurrency or rates list, "
                "and model 'closed' or 'open' (got '{model}')",
                {"key": "stages", "model": self.model},
            )
        if self.driver != "native":
            raise PydanticCustomError(
                "levels", "{key}: stages run on the native driver only", {"key": "driver"}
            )
        if any(spec.kind != "http" for spec in self.requests()):
            raise PydanticCustomError(
                "levels", "{key}: stream endpoints (sse, websocket) run at fixed levels, not in stages",
                {"key": "stages"},
            )
        unit = "rate" if self.model == "open" else "concurrency"
        for index, stage in enumerate(self.stages):
            if getattr(stage, unit) is None:
                raise PydanticCustomError(
                    "levels",
                    "{key}: required in every stage when model = '{model}'",
                    {"key": f"stages[{index}].{unit}", "model": self.model},
                )
        total = sum(stage.duration_s for stage in self.stages)
        if abs(total - self.duration_s) > 1e-3:
            raise PydanticCustomError(
                "levels",
                "{key}: must equal the stages' total of {total} s, or be left out",
                {"key": "duration_s", "total": f"{total:g}"},
            )
        first = self.stages[0]
        if first.kind == "spike" and first.start is None:
            raise PydanticCustomError(
                "levels",
                "{key}: a spike needs a base level: give start, or put a stage before it",
                {"key": "stages[0].start"},
            )
        measured = phases(self.stages)
        if any(max(p.start_level, p.end_level) < (1 if self.model == "closed" else 1e-9) for p in measured):
            raise PydanticCustomError(
                "levels",
                "{key}: a phase with no load at all (level 0 from start to end): give it a level",
                {"key": "stages"},
            )
        return self

    def phases(self) -> list[Phase]:
        """The measured phases of a staged scenario (empty without stages)."""
        return phases(self.stages) if self.stages else []

    @model_validator(mode="after")
    def _levels_match_the_model(self) -> Scenario:
        if self.stages:
            return self
        if self.model == "closed" and not self.concurrency:
            raise PydanticCustomError(
                "levels",
                "{key}: required when model = 'closed': a list of levels (connections)",
                {"key": "concurrency"},
            )
        if self.model == "open" and not self.rates:
            raise PydanticCustomError(
                "levels", "{key}: required when model = 'open': a list of requests/s", {"key": "rates"}
            )
        labels = [spec.label for spec in self.requests()]
        if not self.mix and len(set(labels)) != len(labels):
            raise PydanticCustomError(
                "levels", "{key}: two endpoints share a label; give them distinct names", {"key": "endpoints"}
            )
        self._one_cell_each()
        self._streams_fit_the_model()
        if self.driver != "native" and any(spec.status is not None for spec in self.requests()):
            raise PydanticCustomError(
                "levels",
                "{key}: only the native driver checks an endpoint's declared status; "
                f"{self.driver!r} cannot",
                {"key": "driver"},
            )
        plain = all(spec.method == "GET" and spec.body is None for spec in self.requests())
        if self.driver == "wrk" and (self.mix or not plain):
            raise PydanticCustomError(
                "levels", "{key}: 'wrk' sends one GET per cell: no mix, no POST", {"key": "driver"}
            )
        if self.driver in ("wrk", "locust") and self.model != "closed":
            raise PydanticCustomError(
                "levels",
                "{key}: '{driver}' runs the closed model only (no arrival rate), got model = '{model}'",
                {"key": "driver", "driver": self.driver, "model": self.model},
            )
        return self

    def _streams_fit_the_model(self) -> None:
        """Raise unless stream and idle endpoints run on the native driver, unmixed, in the closed
        model (levels are connections), or a websocket endpoint in the open model (levels are
        messages/s over ``max_connections`` WebSockets)."""
        kinds = sorted({spec.kind for spec in self.requests() if spec.kind != "http"})
        if not kinds:
            return
        what = " and ".join(kinds)
        websocket_open = self.model == "open" and kinds == ["websocket"]
        if self.driver != "native" or (self.model != "closed" and not websocket_open):
            models = "closed model (levels are connections)"
            if kinds == ["websocket"]:
                models += " or open model (levels are messages/s)"
            elif self.model == "open":
                models += "; only websocket endpoints run in the open model"
            raise PydanticCustomError(
                "levels",
                "{key}: {what} endpoints run on the native driver's {models}, got model = '{model}',"
                " driver = '{driver}'",
                {"key": "model", "what": what, "models": models, "model": self.model, "driver": self.driver},
            )
        if self.mix:
            raise PydanticCustomError(
                "levels",
                "{key}: {what} endpoints are measured on their own, not in a mix",
                {"key": "mix", "what": what},
            )

    def _one_cell_each(self) -> None:
        """Raise unless every level and endpoint names a cell of its own: two that share a cell id
        (:attr:`Cell.cell_id`) would share its result files, the second overwriting the first."""
        closed = [Cell(target="", endpoint="", concurrency=c, repeat=0).level for c in self.concurrency]
        opened = [Cell(target="", endpoint="", model="open", rate=r, repeat=0).level for r in self.rates]
        endpoints = [] if self.mix else list(self.endpoint_labels())
        once, distinct = "list each level once", "give each a distinct name"
        for key, names, remedy in (
            ("concurrency", closed, once),
            ("rates", opened, once),
            ("endpoints", endpoints, distinct),
        ):
            ids = [cell_slug(name) for name in names]
            for index, cell_id in enumerate(ids):
                first = ids.index(cell_id)
                if first != index:
                    where = {"key": f"{key}[{index}]", "first": f"{key}[{first}]"}
                    raise PydanticCustomError(
                        "levels",
                        "{key}: the same cell as {first} ('{cell_id}' in its id): {remedy}",
                        {**where, "cell_id": cell_id, "remedy": remedy},
                    )

    def _smoke_window_max_s(self, stages: tuple[Stage, ...]) -> float | None:
        """The cap of a smoke run's longer windows (s): see :meth:`quick`."""
        if self.model == "closed" and not stages:
            return self.duration_s
        if self.model == "saturation" and self.saturation.method == "probe":
            return self.saturation.probe_s
        return None

    def quick(self, factor: float = QUICK_FACTOR) -> tuple[Scenario, str]:
        """A smoke-run version: durations x ``factor`` (with floors), one repeat; and a sentence saying so.

        Warm-up is scaled with a floor of :data:`QUICK_MIN_WARMUP_S` (unless it
        was 0), the measured window with a floor of :data:`QUICK_MIN_WINDOW_S` and
        a cap of :data:`QUICK_MAX_WINDOW_S` (at the default factor; the cap scales
        with the factor)
        (stages all by the window's factor), and a saturation search keeps its
        rates but bisects at most :data:`QUICK_BISECT_STEPS` times.

        ``smoke_window_max_s`` is set to the unscaled window: a closed-model cell
        whose short window held no answer is measured again with a longer one, up
        to that (:func:`harness.run.smoke.longer_window`). A saturation search's
        closed-model probe gets the same, up to its unscaled ``probe_s``.
        """
        warmup = 0.0 if self.warmup_s == 0 else max(round(self.warmup_s * factor, 2), QUICK_MIN_WARMUP_S)
        duration = max(round(self.duration_s * factor, 2), QUICK_MIN_WINDOW_S)
        most = round(QUICK_MAX_WINDOW_S * factor / QUICK_FACTOR, 2)
        capped = duration > most
        duration = min(duration, most)
        scale = duration / self.duration_s
        stages = tuple(stage.scaled(scale) for stage in self.stages)
        if stages:
            duration = sum(stage.duration_s for stage in stages)
        bisect = min(self.saturation.bisect_steps, QUICK_BISECT_STEPS)
        quick = self.model_copy(
            update={
                "warmup_s": warmup,
                "duration_s": duration,
                "repeats": 1,
                "stages": stages,
                "saturation": self.saturation.model_copy(
                    update={
                        "bisect_steps": bisect,
                        "steps": min(self.saturation.steps, QUICK_BISECT_STEPS + 1),
                        "probe_s": max(round(self.saturation.probe_s * factor, 2), QUICK_MIN_WINDOW_S),
                    }
                ),
                "smoke_window_max_s": self._smoke_window_max_s(stages),
            }
        )
        cap = f", at most {most:g} s: x {scale:.3g}" if capped else ""
        search = (
            f", bisections {self.saturation.bisect_steps} -> {bisect}"
            if self.model == "saturation" and bisect != self.saturation.bisect_steps
            else ""
        )
        longer = (
            f", a window with no answer measured again twice as long (up to {self.duration_s:g} s)"
            if self.model == "closed" and not stages
            else ""
        )
        note = (
            f"--quick: durations x {factor:g}{cap} (warm-up {self.warmup_s:g} -> {warmup:g} s, "
            f"window {self.duration_s:g} -> {duration:g} s"
            f"{', every stage alike' if stages else ''}), repeats {self.repeats} -> 1{search}"
            f"{longer}; figures for smoke-testing, not conclusions"
        )
        return quick, note

    def requests(self) -> tuple[RequestSpec, ...]:
        """Every endpoint as a :class:`RequestSpec`, waits scaled by ``time_scale``."""
        specs = [RequestSpec(path=e) if isinstance(e, str) else e for e in self.endpoints]
        return tuple(s.model_copy(update={"path": _time_scaled(s.path, self.time_scale)}) for s in specs)

    def endpoint_labels(self) -> tuple[str, ...]:
        """The endpoints cells are measured on: each request's label, or the one ``mix``."""
        if self.mix:
            return (self.mix,)
        return tuple(spec.label for spec in self.requests())

    def requests_for(self, label: str) -> tuple[RequestSpec, ...]:
        """The requests one endpoint label stands for (all of them for the mix). KeyError if unknown."""
        if self.mix and label == self.mix:
            return self.requests()
        found = tuple(spec for spec in self.requests() if spec.label == label)
        if not found:
            raise KeyError(label)
        return found

    def max_level_connections(self) -> int:
        """The most connections one cell can open (for the file-descriptor check)."""
        if self.model == "closed" and self.stages:
            return int(max(max(p.start_level, p.end_level) for p in self.phases()))
        if self.model == "closed":
            return max(self.concurrency)
        return self.max_connections
