"""Fuzzing: bad files and bad command lines get an error message, never a traceback.

The loaders must return a record or raise ConfigError. ``gwbench`` itself runs
in-process with fuzzed arguments, limited to commands that launch nothing
(``run --dry-run``, ``report``, ``targets``, and unknown commands); the
launching functions are replaced by ones that fail the test if reached.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import math
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import cli
from harness.cli import inspect as cli_inspect
from harness.cli import progress as cli_progress
from harness.model import ConfigError, Scenario, TargetConfig, load_scenario, load_target

REPO = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def toml_value(value: object) -> str:
    """``value`` as an inline TOML value (tables inline, strings as basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        # JSON strings are TOML basic strings, except that TOML wants DEL escaped too.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_document(data: dict[str, object]) -> str:
    return "".join(f"{toml_value(key)} = {toml_value(value)}\n" for key, value in data.items())


def test_the_toml_writer_round_trips() -> None:
    data: dict[str, object] = {
        "a b": [1, -2.5, 'x\x7f\n"', True, datetime.date(1, 2, 3)],
        "t": {"k": {"": []}},
        "n": 2**63 - 1,
    }
    assert tomllib.loads(toml_document(data)) == data


scalars = (
    st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.integers(min_value=-3, max_value=200)
    | st.floats()
    | st.booleans()
    | st.text(max_size=30)
    | st.dates()
)
anything: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
endpoint = st.text(max_size=12).map(lambda s: "/" + s) | st.sampled_from(["/json", "/io/sleep?ms=5"])
small_int = st.integers(min_value=-2, max_value=64)
small_float = st.floats(min_value=-1, max_value=10) | st.sampled_from([0.0, 0.5, 2.0, math.inf, math.nan])
names = st.text(max_size=12) | st.sampled_from(["default", "fastapi-uvicorn", "../up", ".hidden"])

# Plausible values for each key, so that files often get past the first error.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "name": names,
    "description": st.text(max_size=20),
    "targets": st.lists(names, max_size=3),
    "endpoints": st.lists(endpoint, max_size=3),
    "model": st.sampled_from(["closed", "open", ""]),
    "concurrency": st.lists(small_int, max_size=4),
    "warmup_s": small_float | small_int,
    "duration_s": small_float | small_int,
    "repeats": st.integers(min_value=-1, max_value=3),
    "timeout_s": small_float,
    "workers": st.dictionaries(names, small_int, max_size=2),
    "seed": small_int | st.none().map(lambda _: "none"),
}
TARGET_PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "name": names,
    "description": st.text(max_size=20),
    "role": st.sampled_from(["target", "upstream", "other"]),
    "framework": st.text(max_size=8),
    "server": st.text(max_size=8),
    "interface": st.sampled_from(["wsgi", "asgi", "native", "cgi"]),
    "worker_model": st.text(max_size=8),
    "command": st.sampled_from(["x --host {host} --port {port}", "x {port}", "{python} {host}:{port} {w}"]),
    "default_workers": small_int,
    "workers_rule": st.text(max_size=8),
    "app_dir": st.text(max_size=8),
    "packages": st.lists(st.text(max_size=8), max_size=3),
    "env": st.dictionaries(st.text(max_size=5), st.text(max_size=5) | small_int, max_size=2),
    "settings": st.dictionaries(st.text(max_size=5), scalars | st.lists(small_int, max_size=2), max_size=3),
    "ready_path": endpoint,
}


def documents(
    plausible: dict[str, st.SearchStrategy[Any]], tame: frozenset[str] = frozenset()
) -> st.SearchStrategy[dict[str, object]]:
    """Dicts with any of the known keys and maybe unknown keys. A known key's value is
    plausible or arbitrary; only plausible for the keys in ``tame``."""
    known = st.fixed_dictionaries(
        {}, optional={k: v if k in tame else v | anything for k, v in plausible.items()}
    )
    unknown = st.dictionaries(st.text(max_size=10).filter(lambda k: k not in plausible), anything, max_size=2)
    return st.tuples(known, unknown).map(lambda parts: {**parts[1], **parts[0]})


@st.composite
def near_valid(
    draw: st.DrawFn, valid: dict[str, object], plausible: dict[str, st.SearchStrategy[Any]]
) -> Any:
    """``valid`` with up to two keys given plausible values and maybe one key dropped."""
    data = dict(valid)
    for key in draw(st.lists(st.sampled_from(sorted(plausible)), max_size=2, unique=True)):
        data[key] = draw(plausible[key])
    if draw(st.booleans()) and draw(st.integers(0, 3)) == 0:
        del data[draw(st.sampled_from(sorted(data)))]
    return data


VALID_SCENARIO: dict[str, object] = {
    "description": "d",
    "endpoints": ["/json"],
    "concurrency": [1, 8],
    "warmup_s": 0.5,
    "duration_s": 2.0,
}
VALID_TARGET: dict[str, object] = {
    "description": "d",
    "framework": "f",
    "server": "s",
    "interface": "asgi",
    "worker_model": "w",
    "command": "x --host {host} --port {port}",
    "default_workers": 1,
    "workers_rule": "r",
}


def assert_names_the_file(error: ConfigError, path: Path) -> None:
    lines = str(error).split("\n")
    assert all(line.startswith(f"{path}: ") for line in lines), str(error)


@FUZZ
@given(content=st.binary(max_size=600) | st.text(max_size=300).map(str.encode))
def test_load_scenario_on_arbitrary_bytes(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_bytes(content)
    try:
        load_scenario(path)
    except ConfigError as exc:
        assert_names_the_file(exc, path)


@FUZZ
@given(data=documents(PLAUSIBLE) | near_valid(VALID_SCENARIO, PLAUSIBLE))
def test_load_scenario_on_arbitrary_toml(tmp_path: Path, data: dict[str, object]) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(toml_document(data), encoding="utf-8")
    try:
        scenario = load_scenario(path)
    except ConfigError as exc:
        assert "invalid TOML" not in str(exc)  # the writer is right, the validation is under test
        assert_names_the_file(exc, path)
    else:
        assert Scenario.model_validate(scenario.model_dump(mode="json")) == scenario


@FUZZ
@given(content=st.binary(max_size=600) | st.text(max_size=300).map(str.encode))
def test_load_target_on_arbitrary_bytes(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "target.toml"
    path.write_bytes(content)
    try:
        load_target(tmp_path)
    except ConfigError as exc:
        assert_names_the_file(exc, path)


@FUZZ
@given(data=documents(TARGET_PLAUSIBLE) | near_valid(VALID_TARGET, TARGET_PLAUSIBLE))
def test_load_target_on_arbitrary_toml(tmp_path: Path, data: dict[str, object]) -> None:
    path = tmp_path / "target.toml"
    path.write_text(toml_document(data), encoding="utf-8")
    try:
        target = load_target(tmp_path)
    except ConfigError as exc:
        assert "invalid TOML" not in str(exc)
        assert_names_the_file(exc, path)
    else:
        assert TargetConfig.model_validate(target.model_dump(mode="json")) == target


# --- the command line ---------------------------------------------------------

# Random words are never a subcommand's name: only the tests below choose which runs.
token = st.text(max_size=12).filter(lambda t: t not in {"run", "report", "targets", "verify", "serve"})
option_like = token.map(lambda t: "--" + t) | st.sampled_from(["-h", "--", "-", "--dry", "--seed=x", "-v"])


@contextlib.contextmanager
def gwbench_in_process() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Capture stdout and stderr; any attempt to launch a stack fails the test."""

    def launched(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"gwbench tried to launch something: {args} {kwargs}")

    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(cli_progress, "execute", launched),
        mock.patch.object(cli_inspect, "LocalLauncher", launched),
        mock.patch.object(cli_inspect, "verify", launched),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        yield out, err


def run_gwbench(argv: list[str]) -> tuple[int, str]:
    """Exit code and stderr of ``gwbench argv``, run in-process."""
    with gwbench_in_process() as (_, err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            assert exc.code in (0, 2), (argv, exc.code)
            code = int(exc.code or 0)
    return code, err.getvalue()


def check_gwbench(argv: list[str]) -> None:
    code, err = run_gwbench(argv)
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)


# Scenario files for `run --dry-run`: repeats stay small, as planning takes memory
# in proportion (a plan of 10**9 repeats does not finish).
cli_scenarios = documents(PLAUSIBLE, tame=frozenset({"repeats"})) | near_valid(VALID_SCENARIO, PLAUSIBLE)
urls = st.sampled_from(
    ["http://127.0.0.1:8000/json", "http://localhost:1/x?y=1", "ftp://127.0.0.1/", "http://:80/", "x"]
) | token.map(lambda t: "http://127.0.0.1:9/" + t)


@st.composite
def run_argv(draw: st.DrawFn, tmp: Path) -> list[str]:
    where = draw(st.sampled_from(["fuzzed", "fuzzed", "missing", "directory", "quick", "default"]))
    if where == "fuzzed":
        path = tmp / "fuzz.toml"
        path.write_text(toml_document(draw(cli_scenarios)), encoding="utf-8")
    else:
        path = {
            "missing": tmp / "none.toml",
            "directory": tmp,
            "quick": REPO / "scenarios" / "quick.toml",
            "default": None,
        }[where] or REPO / "scenarios" / "default.toml"
    options: list[list[str]] = draw(
        st.lists(
            st.sampled_from([["--no-report"], ["--allow-remote"]])
            | st.tuples(st.sampled_from(["--targets", "--seed", "--pid"]), token).map(list)
            | st.tuples(st.just("--pid"), st.integers(min_value=-(2**31), max_value=2**31).map(str)).map(list)
            | st.tuples(
                st.just("--targets"), st.sampled_from(["fastapi-uvicorn", "fastapi-uvicon", ","])
            ).map(list)
            | st.tuples(st.just("--url"), urls).map(list)
            | st.tuples(st.just("--seed"), st.integers().map(str)).map(list)
            | option_like.map(lambda o: [o])
            | token.map(lambda t: [t]),
            max_size=3,
        )
    )
    tail = [part for option in options for part in option]
    return ["run", "--dry-run", str(path), *tail, "--results", str(tmp / "results")]


@FUZZ
@given(data=st.data())
def test_run_dry_run_with_fuzzed_arguments(tmp_path: Path, data: st.DataObject) -> None:
    check_gwbench(data.draw(run_argv(tmp_path)))


@FUZZ
@given(
    manifest=st.binary(max_size=300)
    | anything.map(lambda v: json.dumps({"schema_version": 1, "x": v}, default=str).encode()),
    measurements=st.binary(max_size=300) | st.none(),
    missing=st.booleans(),
    extra=st.lists(option_like | token, max_size=2),
)
def test_report_of_a_garbage_or_missing_run(
    tmp_path: Path, manifest: bytes, measurements: bytes | None, missing: bool, extra: list[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "manifest.json").write_bytes(manifest)
    (run / "measurements.jsonl").unlink(missing_ok=True)
    if measurements is not None:
        (run / "measurements.jsonl").write_bytes(measurements)
    target = str(tmp_path / "no-such-run") if missing else str(run)
    check_gwbench(
        ["report", target, "--results", str(tmp_path), "--reports", str(tmp_path / "reports"), *extra]
    )


@FUZZ
@given(
    before=st.lists(
        st.sampled_from([["--targets-dir", "/nonexistent"], ["--targets-dir", str(REPO / "targets")]])
    ),
    command=st.sampled_from([["targets"], [], ["-h"], ["--help"], ["run", "--dry-run", "-h"]])
    | token.map(lambda t: [t]),
    after=st.lists(option_like | token, max_size=2),
)
def test_targets_and_unknown_commands(before: list[list[str]], command: list[str], after: list[str]) -> None:
    check_gwbench([part for option in before for part in option] + command + after)


def test_a_garbage_targets_folder(tmp_path: Path) -> None:
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "target.toml").write_bytes(b"\xff\x00")
    code, err = run_gwbench(["--targets-dir", str(tmp_path), "targets"])
    assert code == 2
    assert f"{tmp_path / 'stack' / 'target.toml'}: not a UTF-8 text file" in err


# Inputs with which the fuzzing above once got a traceback out of the CLI.
@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["report", "{file}"], id="report-of-a-regular-file"),
        pytest.param(["report", "{dir}"], id="report-whose-measurements-jsonl-is-a-directory"),
        pytest.param(["report", "bad\x00run"], id="report-with-a-nul-in-the-path"),
        pytest.param(
            ["run", "--dry-run", "--url", "http://127.0.0.1:1/", "--pid", "99999999999999999999", "{quick}"],
            id="run-with-a-pid-too-large",
        ),
        pytest.param(["run", "--dry-run", "--url", "http://[::1/x", "{quick}"], id="run-with-a-bad-ipv6-url"),
        pytest.param(
            ["run", "--dry-run", "--url", "http://127.0.0.1:1/a b\r\nX: y", "{quick}"],
            id="run-with-a-header-in-the-url",
        ),
    ],
)
def test_inputs_that_once_crashed(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir" / "measurements.jsonl").mkdir(parents=True)
    paths = {"file": tmp_path / "file", "dir": tmp_path / "dir", "quick": REPO / "scenarios" / "quick.toml"}
    argv = [a.format(**paths) for a in argv]
    check_gwbench(
        [*argv, "--results", str(tmp_path), *(["--reports", str(tmp_path)] if argv[0] == "report" else [])]
    )
