"""Checks of the workload endpoints of contract v3: /io/fanout, POST /validate and /cpu.

Each ``check_*`` function sends its requests through a :class:`Client` and returns its
checks; nothing raises for a misbehaving target.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from harness.verify.exchange import (
    Check,
    Client,
    Reply,
    Request,
    check_exchange,
    check_json,
    check_timing,
    json_body,
)

#: /io/fanout's timed requests: FANOUT_CALLS calls of FANOUT_MS each. Sequential calls
#: take at least their sum; overlapping ones at least one call and less than half the sum.
FANOUT_MS = 60
FANOUT_CALLS = 5
#: The mode each interface must answer with, without ``mode`` and with ``mode=threads``.
FANOUT_MODES: dict[str, tuple[str, str]] = {"wsgi": ("sequential", "threads"), "asgi": ("gather", "gather")}

#: Query strings of /io/fanout with an invalid parameter, each with the exact reason.
BAD_FANOUT_CASES: tuple[tuple[str, str], ...] = (
    ("?n=1", "ms is required"),
    ("?ms=foo&n=1", "ms must be an integer"),
    ("?ms=10001&n=1", "ms must be between 0 and 10000"),
    ("?ms=foo&n=0&mode=x", "ms must be an integer"),
    ("?ms=0", "n is required"),
    ("?ms=0&n=x", "n must be an integer"),
    ("?ms=0&n=1.5", "n must be an integer"),
    ("?ms=0&n=0", "n must be between 1 and 10"),
    ("?ms=0&n=11", "n must be between 1 and 10"),
    ("?ms=0&n=0&mode=x", "n must be between 1 and 10"),
    ("?ms=0&n=1&mode=", "mode must be default or threads"),
    ("?ms=0&n=1&mode=gather", "mode must be default or threads"),
    ("?ms=0&n=1&mode=THREADS", "mode must be default or threads"),
)

#: Query strings of /cpu with an invalid ``n``, each with the exact reason.
BAD_CPU_CASES: tuple[tuple[str, str], ...] = (
    ("", "n is required"),
    ("?n=foo", "n must be an integer"),
    ("?n=1.5", "n must be an integer"),
    ("?n=0", "n must be between 1 and 1000000"),
    ("?n=-1", "n must be between 1 and 1000000"),
    ("?n=1000001", "n must be between 1 and 1000000"),
)
CPU_ROUNDS = (1, 1000)

MAX_EVENTS = 1000
VALID_EVENT: dict[str, Any] = {
    "id": "t-1",
    "symbol": "AAPL",
    "side": "buy",
    "quantity": 100,
    "price": 187.25,
    "ts": "2026-11-24T09:30:00Z",
}
#: Valid events that reach the edges of each rule; keys outside the contract are ignored.
VALID_EVENTS: tuple[dict[str, Any], ...] = (
    VALID_EVENT,
    {"id": "x" * 64, "symbol": "ABCDEFGHIJKL", "side": "sell", "quantity": 1, "price": 3,
     "ts": "2026-11-24T10:30:00.5+01:00", "venue": "XNAS"},
    {"id": "\u00e9\u2603", "symbol": "A", "side": "buy", "quantity": 10**12, "price": 1e-9,
     "ts": "0001-01-01T00:00:00.123456-23:59"},
)  # fmt: skip
#: A JSON number too large for a double; inserted as raw text (json.dumps cannot write it).
_TOO_LARGE = "1e999"
_MISSING = object()
#: One wrong value per event, for every kind of rule: (field, value); _MISSING drops the key.
INVALID_FIELDS: tuple[tuple[str, object], ...] = (
    ("id", ""), ("id", "x" * 65), ("id", 5), ("id", None), ("id", _MISSING),
    ("symbol", "aapl"), ("symbol", "AAPL1"), ("symbol", "AAPL\n"), ("symbol", ""),
    ("symbol", "ABCDEFGHIJKLM"), ("symbol", 7), ("symbol", _MISSING),
    ("side", "BUY"), ("side", "hold"), ("side", None), ("side", _MISSING),
    ("quantity", 0), ("quantity", -3), ("quantity", 100.0), ("quantity", 1.5), ("quantity", "100"),
    ("quantity", True), ("quantity", _MISSING),
    ("price", 0), ("price", -1), ("price", "3"), ("price", True), ("price", _TOO_LARGE),
    ("price", 10**400), ("price", None),
    ("ts", "2026-11-24T09:30:00"), ("ts", "2026-11-24 09:30:00Z"), ("ts", "2026-11-24t09:30:00z"),
    ("ts", "2026-02-30T00:00:00Z"), ("ts", "2026-13-01T00:00:00Z"), ("ts", "2026-11-24T24:00:00Z"),
    ("ts", "2026-11-24T23:59:60Z"), ("ts", "2026-11-24T09:30:00+24:00"), ("ts", "0000-01-01T00:00:00Z"),
    ("ts", "2026-11-24T09:30:00.1234567Z"), ("ts", "2026-11-24"), ("ts", "1764000000"),
    ("ts", 1764000000), ("ts", _MISSING),
)  # fmt: skip
#: Items of ``events`` that are not objects.
NOT_OBJECTS: tuple[object, ...] = (5, "event", [], None)
#: Bodies that are not JSON.
NOT_JSON_BODIES: tuple[bytes, ...] = (b"", b"{", b'{"events": [}', b"{} x", b'{"events": "\xff"}')
INVALID_JSON = {"error": "invalid JSON"}

Loc = tuple[str | int, ...]


def _dumps(body: object) -> bytes:
    return json.dumps(body).replace(json.dumps(_TOO_LARGE), _TOO_LARGE).encode()


def _post(body: bytes, label: str) -> Request:
    return Request("/validate", "POST", body, label)


def _fanout_body_ok(calls: int, ms: int, modes: set[str]) -> Callable[[Reply], bool]:
    def ok(reply: Reply) -> bool:
        body = json_body(reply)
        return (
            isinstance(body, dict)
            and set(body) == {"calls", "delayed_ms", "mode"}
            and body["calls"] == calls
            and body["delayed_ms"] == [ms] * calls
            and body["mode"] in modes
        )

    return ok


def _check_fanout_call(
    client: Client, query: str, calls: int, ms: int, modes: set[str]
) -> tuple[list[Check], Reply | None, str | None]:
    """One 200 answer of /io/fanout; also returns the mode it named."""
    checks, reply = check_exchange(
        client,
        f"/io/fanout{query}",
        status=200,
        media_type="application/json",
        body_ok=_fanout_body_ok(calls, ms, modes),
        expected=f"200 application/json calls {calls}, delayed_ms {[ms] * calls}, mode in {sorted(modes)}",
    )
    body = None if reply is None else json_body(reply)
    mode = body.get("mode") if isinstance(body, dict) else None
    return checks, reply, mode if isinstance(mode, str) else None


def _check_fanout_timing(path: str, reply: Reply | None, mode: str | None) -> Check:
    serial_ms = FANOUT_CALLS * FANOUT_MS
    if mode == "sequential":
        return check_timing(f"GET {path}", reply, serial_ms)
    return check_timing(f"GET {path}", reply, FANOUT_MS, serial_ms / 2)


def check_fanout(client: Client, interface: str | None) -> list[Check]:
    """/io/fanout: the calls, the mode the ``interface`` implies (either, if unknown), sequential
    timing for ``sequential`` and overlapping timing for ``threads`` and ``gather``; 400s."""
    natural, threaded = FANOUT_MODES.get(interface or "", (None, None))
    natural_modes = {natural} if natural else {"sequential", "gather"}
    checks, _, seen = _check_fanout_call(client, "?ms=0&n=1", 1, 0, natural_modes)
    timed = f"?ms={FANOUT_MS}&n={FANOUT_CALLS}"
    found, reply, mode = _check_fanout_call(client, timed, FANOUT_CALLS, FANOUT_MS, natural_modes)
    checks += [*found, _check_fanout_timing(f"/io/fanout{timed}", reply, mode)]
    natural = natural or mode or seen
    if threaded is None:
        threaded = {"sequential": "threads", "gather": "gather"}.get(natural or "")
    threaded_modes = {threaded} if threaded else {"threads", "gather"}
    timed += "&mode=threads"
    found, reply, mode = _check_fanout_call(client, timed, FANOUT_CALLS, FANOUT_MS, threaded_modes)
    checks += [*found, _check_fanout_timing(f"/io/fanout{timed}", reply, mode)]
    # The first value of each parameter wins; mode=default is the mode left out.
    first_wins = "?ms=0&n=2&n=x&mode=default&mode=x"
    checks += _check_fanout_call(client, first_wins, 2, 0, {natural} if natural else natural_modes)[0]
    for query, reason in BAD_FANOUT_CASES:
        checks += check_json(client, "/io/fanout" + query, 400, {"error": reason})[0]
    return checks


def sha256_chain(rounds: int) -> str:
    """The contract's /cpu digest: from 64 zero bytes, ``rounds`` SHA-256, each digest
    (twice) the next block; the hex of the last digest."""
    block = bytes(64)
    digest = b""
    for _ in range(rounds):
        digest = hashlib.sha256(block).digest()
        block = digest + digest
    return digest.hex()


def check_cpu(client: Client) -> list[Check]:
    """/cpu: the exact digest for small ``n``; 400s."""
    checks: list[Check] = []
    for rounds in CPU_ROUNDS:
        checks += check_json(client, f"/cpu?n={rounds}", 200, {"n": rounds, "digest": sha256_chain(rounds)})[
            0
        ]
    for query, reason in BAD_CPU_CASES:
        checks += check_json(client, "/cpu" + query, 400, {"error": reason})[0]
    return checks


def _errors_shape(body: object) -> list[Loc] | str:
    """The ``loc``s of a 422 body, or what is wrong with its shape."""
    if not isinstance(body, dict) or set(body) != {"errors"} or not isinstance(body["errors"], list):
        return 'not {"errors": [...]}'
    locs: list[Loc] = []
    for entry in body["errors"]:
        if not isinstance(entry, dict) or set(entry) != {"loc", "msg"}:
            return f"an entry without exactly the keys loc and msg: {entry!r}"
        loc, msg = entry["loc"], entry["msg"]
        if not isinstance(loc, list) or not all(
            isinstance(k, str | int) and not isinstance(k, bool) for k in loc
        ):
            return f"a loc that is not a list of keys and indexes: {loc!r}"
        if not isinstance(msg, str) or not msg.strip():
            return f"a msg that is not a non-empty string: {msg!r}"
        locs.append(tuple(loc))
    return locs


def _check_invalid(client: Client, request: Request, expected: set[Loc], what: str = "") -> list[Check]:
    """A 422 whose ``errors`` name exactly the ``expected`` locations (``what`` names them)."""
    found: dict[str, object] = {}

    def body_ok(reply: Reply) -> bool:
        shape = _errors_shape(json_body(reply))
        if isinstance(shape, str):
            found["problem"] = shape
            return False
        missing, unexpected = expected - set(shape), set(shape) - expected
        if missing or unexpected:
            found["problem"] = (
                f"missing locs {sorted(missing, key=str)}, unexpected locs {sorted(unexpected, key=str)}"
            )
        return not missing and not unexpected

    shown = what or ", ".join(json.dumps(list(loc)) for loc in sorted(expected, key=str))
    checks, _ = check_exchange(
        client,
        request,
        status=422,
        media_type="application/json",
        body_ok=body_ok,
        expected=f'422 application/json {{"errors": [{{"loc", "msg"}}, ...]}} naming exactly {shown}',
    )
    if "problem" in found:
        checks[0] = Check(checks[0].name, False, f"{checks[0].detail}; {found['problem']}")
    return checks


def _invalid_fields_batch() -> tuple[bytes, set[Loc]]:
    """A valid event, then one event per INVALID_FIELDS case, per NOT_OBJECTS item, and
    an empty one (every field missing); with the locations that must be named."""
    events: list[object] = [VALID_EVENT]
    expected: set[Loc] = set()
    for field, value in INVALID_FIELDS:
        event = {key: v for key, v in VALID_EVENT.items() if key != field}
        if value is not _MISSING:
            event[field] = value
        expected.add(("events", len(events), field))
        events.append(event)
    for item in NOT_OBJECTS:
        expected.add(("events", len(events)))
        events.append(item)
    expected |= {("events", len(events), field) for field in VALID_EVENT}
    events.append({})
    return _dumps({"events": events}), expected


def check_validate(client: Client) -> list[Check]:
    """POST /validate: valid batches (edge values, 1000 events), one wrong value per rule
    in one batch, invalid structure, bodies that are not JSON."""
    checks = check_json(client, _post(_dumps({"events": list(VALID_EVENTS)}), "valid"), 200, {"valid": 3})[0]
    largest = _dumps({"events": [VALID_EVENT] * MAX_EVENTS})
    checks += check_json(client, _post(largest, f"{MAX_EVENTS} events"), 200, {"valid": MAX_EVENTS})[0]

    body, expected = _invalid_fields_batch()
    label = f"{len(INVALID_FIELDS)} invalid fields, {len(NOT_OBJECTS)} non-objects, an empty event"
    checks += _check_invalid(client, _post(body, label), expected, f"the {len(expected)} bad locations")

    too_many = [VALID_EVENT] * MAX_EVENTS + [{}]
    structure: tuple[tuple[str, object, Loc], ...] = (
        ("an array", [VALID_EVENT], ()),
        ("a number", 5, ()),
        ("no events", {"trades": [VALID_EVENT]}, ("events",)),
        ("events null", {"events": None}, ("events",)),
        ("events an object", {"events": VALID_EVENT}, ("events",)),
        ("no event", {"events": []}, ("events",)),
        (f"{MAX_EVENTS + 1} events, the last invalid", {"events": too_many}, ("events",)),
    )
    for label, document, loc in structure:
        checks += _check_invalid(client, _post(_dumps(document), label), {loc})

    for raw in NOT_JSON_BODIES:
        checks += check_json(client, _post(raw, f"body {raw!r}"), 400, INVALID_JSON)[0]
    return checks
