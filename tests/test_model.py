"""Loading scenario and target files: exact error messages for bad input, and suggest()."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.model import ConfigError, Scenario, TargetConfig, load_scenario, load_target, suggest
from harness.plan import plan

SCENARIO = """\
description = "d"
endpoints = ["/json", "/io/sleep?ms=5"]
concurrency = [1, 8]
warmup_s = 0.5
duration_s = 2
"""

TARGET = """\
description = "d"
framework = "f"
server = "s"
interface = "asgi"
worker_model = "w"
command = "{python} -m s --host {host} --port {port} --workers {workers}"
default_workers = 1
workers_rule = "r"

[settings]
backlog = 2048
loop = "uvloop"
"""


def scenario_error(tmp_path: Path, text: str, name: str = "x.toml") -> tuple[Path, str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    return path, str(caught.value)


def replaced(text: str, key: str, line: str) -> str:
    """``text`` with the line of ``key`` replaced by ``line`` (removed if empty)."""
    lines = [line if x.startswith(f"{key} =") else x for x in text.splitlines()]
    return "\n".join(x for x in lines if x) + "\n"


def test_a_valid_scenario_loads_and_is_named_after_its_file(tmp_path: Path) -> None:
    path = tmp_path / "smoke.toml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    assert scenario.name == "smoke"
    assert scenario.concurrency == (1, 8)
    assert Scenario.model_validate(scenario.model_dump(mode="json")) == scenario


def test_the_repository_scenarios_load() -> None:
    for path in sorted((Path(__file__).parents[1] / "scenarios").glob("*.toml")):
        load_scenario(path)


def test_a_missing_duration_is_required(tmp_path: Path) -> None:
    path, message = scenario_error(tmp_path, replaced(SCENARIO, "duration_s", ""))
    assert message == f"{path}: duration_s: required, missing"


def test_a_negative_concurrency_level_is_named_by_its_index(tmp_path: Path) -> None:
    path, message = scenario_error(tmp_path, replaced(SCENARIO, "concurrency", "concurrency = [1, -5]"))
    assert message == f"{path}: concurrency[1]: must be >= 1, got -5"


def test_a_negative_duration(tmp_path: Path) -> None:
    path, message = scenario_error(tmp_path, replaced(SCENARIO, "duration_s", "duration_s = -2"))
    assert message == f"{path}: duration_s: must be > 0, got -2"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('duration_s = "long"', "duration_s: must be a number, got 'long'"),
        ("duration_s = inf", "duration_s: must be a finite number, got inf"),
        ("duration_s = [2]", "duration_s: must be a number, got [2]"),
        ("repeats = 1.5", "repeats: must be an integer, got 1.5"),
        ('model = "queue"', "model: must be one of 'closed', 'open' or 'saturation', got 'queue'"),
        ('model = "open"', "rates: required when model = 'open': a list of requests/s"),
        (
            'driver = "wrk"\nmodel = "saturation"',
            "driver: 'wrk' runs the closed model only (no arrival rate), got model = 'saturation'",
        ),
        ("rates = [0]", "rates[0]: must be > 0, got 0"),
        ('endpoints = "/json"', "endpoints: must be a list, got '/json'"),
        ("endpoints = []", "endpoints: must have at least 1 item(s), got []"),
        ('concurrency = [8, "many"]', "concurrency[1]: must be an integer, got 'many'"),
        ('workers = { "flask gunicorn" = 0 }', 'workers."flask gunicorn": must be >= 1, got 0'),
        ("seed = 2026-01-01", "seed: must be an integer, got datetime.date(2026, 1, 1)"),
    ],
)
def test_a_wrong_value_says_what_was_expected_and_what_was_given(
    tmp_path: Path, line: str, expected: str
) -> None:
    key = line.split(" =")[0]
    text = replaced(SCENARIO, key, line) if f"{key} =" in SCENARIO else SCENARIO + line + "\n"
    path, message = scenario_error(tmp_path, text)
    assert message == f"{path}: {expected}"


@pytest.mark.parametrize(
    ("endpoint", "shown"),
    [("json", "'json'"), ("/a b", "'/a b'"), ("/x\\r\\nHost: evil", "'/x\\r\\nHost: evil'")],
)
def test_a_bad_endpoint(tmp_path: Path, endpoint: str, shown: str) -> None:
    text = replaced(SCENARIO, "endpoints", f'endpoints = ["/json", "{endpoint}"]')
    path, message = scenario_error(tmp_path, text)
    assert message == (
        f"{path}: endpoints[1]: must be a path starting with '/', printable ASCII without spaces, got {shown}"
    )


def test_a_long_value_is_cut_short(tmp_path: Path) -> None:
    path, message = scenario_error(tmp_path, SCENARIO + f'seed = "{"x" * 200}"\n')
    assert message == f"{path}: seed: must be an integer, got '{'x' * 56}..."
    assert len(message.split(", got ")[1]) == 60


def test_a_key_set_by_quick_is_refused_in_a_file(tmp_path: Path) -> None:
    path, message = scenario_error(tmp_path, SCENARIO + "smoke_window_max_s = 30\n")
    assert message == f"{path}: smoke_window_max_s: set by --quick, not by a file"


def test_an_unknown_key_lists_the_known_ones_or_suggests_the_closest(tmp_path: Path) -> None:
    path, message = scenario_error(tmp_path, SCENARIO + "frobnicate = 1\n")
    assert message == (
        f"{path}: frobnicate: unknown key (known keys: name, description, targets, endpoints, mix, "
        "time_scale, model, concurrency, rates, arrival, max_connections, saturation, slo, driver, "
        "generator_processes, warmup_s, duration_s, repeats, timeout_s, database, workers, cpus, memory_mib, "
        "seed, "
        "target_requests_per_second, stages)"
    )
    path, message = scenario_error(tmp_path, replaced(SCENARIO, "duration_s", "duraton_s = 2"))
    assert message.splitlines() == [
        f"{path}: duration_s: required, missing",
        f"{path}: duraton_s: unknown key (did you mean 'duration_s' or 'saturation'?)",
    ]


def test_every_problem_gets_a_line_naming_the_file(tmp_path: Path) -> None:
    text = 'description = 1\nendpoints = ["json"]\nconcurrency = [0]\nwarmup_s = -1\n'
    path, message = scenario_error(tmp_path, text)
    assert message.splitlines() == [
        f"{path}: description: must be a string, got 1",
        f"{path}: endpoints[0]: must be a path starting with '/', printable ASCII without spaces, got 'json'",
        f"{path}: concurrency[0]: must be >= 1, got 0",
        f"{path}: warmup_s: must be >= 0, got -1",
        f"{path}: duration_s: required, missing",
    ]


def test_a_file_name_unfit_for_a_results_folder_needs_a_name(tmp_path: Path) -> None:
    path, message = scenario_error(tmp_path, SCENARIO, name="my scenario.toml")
    assert message == (
        f"{path}: name: must be letters, digits, '.', '_' or '-' (it names the results folder; "
        "default: the file's name), got 'my scenario'"
    )
    (tmp_path / "my scenario.toml").write_text(SCENARIO + 'name = "mine"\n')
    assert load_scenario(tmp_path / "my scenario.toml").name == "mine"


def test_not_toml(tmp_path: Path) -> None:
    path, message = scenario_error(tmp_path, "description = \n")
    assert message == f"{path}: invalid TOML: Invalid value (at line 1, column 15)"


def test_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_bytes(b"description = 1\n\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"not a UTF-8 text file \(byte 0xff at offset 16\)") as caught:
        load_scenario(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_nesting_too_deep_for_the_parser(tmp_path: Path) -> None:
    path, message = scenario_error(tmp_path, "seed = " + "[" * 5000 + "]" * 5000 + "\n")
    assert message == f"{path}: invalid TOML: arrays or tables nested too deeply"


def test_an_integer_too_long_to_parse(tmp_path: Path) -> None:
    path, message = scenario_error(tmp_path, "seed = " + "9" * 5000 + "\n")
    assert message.startswith(f"{path}: invalid TOML: ")


def test_a_directory_or_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_scenario(tmp_path)
    assert str(caught.value) == f"{tmp_path}: is a directory, not a TOML file"
    with pytest.raises(ConfigError) as caught:
        load_scenario(tmp_path / "none.toml")
    assert str(caught.value) == f"{tmp_path / 'none.toml'}: file not found"


def test_a_file_too_large_to_be_a_configuration(tmp_path: Path) -> None:
    path, message = scenario_error(tmp_path, "# " + "x" * (1 << 20) + "\n")
    assert message == f"{path}: larger than 1048576 bytes, not a configuration file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(SCENARIO)
    path.chmod(0)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert str(caught.value) == f"{path}: cannot read: Permission denied"


def target_error(tmp_path: Path, text: str) -> tuple[Path, str]:
    (tmp_path / "stack").mkdir(exist_ok=True)
    path = tmp_path / "stack" / "target.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_target(path.parent)
    return path, str(caught.value)


def test_a_valid_target_is_named_after_its_folder(tmp_path: Path) -> None:
    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "target.toml").write_text(TARGET)
    target = load_target(tmp_path / "stack")
    assert target.name == "stack"
    assert target.settings == {"backlog": 2048, "loop": "uvloop"}
    assert TargetConfig.model_validate(target.model_dump(mode="json")) == target


@pytest.mark.parametrize(
    ("key", "line", "expected"),
    [
        ("server", "", "server: required, missing"),
        ("interface", 'interface = "cgi"', "interface: must be one of 'wsgi', 'asgi' or 'native', got 'cgi'"),
        ("default_workers", "default_workers = 0", "default_workers: must be >= 1, got 0"),
        ("default_workers", 'default_workers = "2"x', "invalid TOML: "),
        (
            "command",
            'command = "serve --port {port}"',
            "command: must contain the placeholder {host}, got 'serve --port {port}'",
        ),
        ("backlog", "backlog = [1, 2]", "settings.backlog: must be a string, number or boolean, got [1, 2]"),
        ("framework", 'framwork = "f"', "framework: required, missing"),
        ("default_workers", "default_workers = 5000", "default_workers: must be <= 1024, got 5000"),
        ("default_workers", "default_workers = true", "default_workers: must be an integer, got True"),
        (
            "workers_rule",
            'workers_rule = "r"\nverify_contract = 1',
            "verify_contract: must be true or false, got 1",
        ),
    ],
)
def test_a_bad_target_file(tmp_path: Path, key: str, line: str, expected: str) -> None:
    path, message = target_error(tmp_path, replaced(TARGET, key, line))
    assert message.splitlines()[0].startswith(f"{path}: {expected}")


def test_an_unknown_target_key_suggests_the_closest(tmp_path: Path) -> None:
    path, message = target_error(tmp_path, TARGET.replace("[settings]", 'ready_pth = "/ok"\n[settings]'))
    assert message == f"{path}: ready_pth: unknown key (did you mean 'ready_path'?)"


def test_a_target_folder_without_target_toml_or_with_a_directory_there(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_target(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'target.toml'}: file not found"
    (tmp_path / "target.toml").mkdir()
    with pytest.raises(ConfigError) as caught:
        load_target(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'target.toml'}: is a directory, not a TOML file"


def test_suggest_names_the_closest_known_names() -> None:
    stacks = ["django-gunicorn", "django-uvicorn", "fastapi-uvicorn", "flask-gunicorn", "quart-hypercorn"]
    assert suggest("fastapi-uvicon", stacks) == " (did you mean 'fastapi-uvicorn' or 'flask-gunicorn'?)"
    assert suggest("django", stacks) == " (did you mean 'django-uvicorn'?)"
    assert suggest("django-gunicron", stacks) == (
        " (did you mean 'django-gunicorn', 'django-uvicorn' or 'flask-gunicorn'?)"
    )
    assert suggest("nothing-like-it", stacks) == ""
    assert suggest("x", []) == ""


def test_an_slo_names_the_first_rule_a_cell_breaks() -> None:
    from harness.model import Slo

    slo = Slo(p99_ms=100, error_rate=0.01, min_achieved_ratio=0.95)
    ok = {"p99_ms": 80.0, "failed": 0, "scheduled": 1000, "achieved_rate": 100.0, "intended_rate": 100.0}
    assert slo.breach(**ok) is None  # type: ignore[arg-type]
    assert slo.breach(**{**ok, "p99_ms": 120.0}) == "p99 120.0 ms > 100 ms"  # type: ignore[arg-type]
    assert slo.breach(**{**ok, "failed": 11}) == "errors 1.10% > 1%"  # type: ignore[arg-type]
    assert slo.breach(**{**ok, "failed": 10}) is None  # type: ignore[arg-type]
    assert slo.breach(**{**ok, "achieved_rate": 94.0}) == (  # type: ignore[arg-type]
        "achieved 94.0 req/s < 95% of 100 req/s"
    )
    assert slo.breach(**{**ok, "p99_ms": None}) == "no successful response"  # type: ignore[arg-type]


def test_endpoints_may_be_tables_with_a_method_a_body_file_and_a_weight(tmp_path: Path) -> None:
    (tmp_path / "batch.json").write_text('{"events": []}')
    path = tmp_path / "mix.toml"
    path.write_text(
        'description = "x"\nconcurrency = [1]\nwarmup_s = 0\nduration_s = 1\nmix = "journey"\n'
        'time_scale = 0.1\nendpoints = ["/io/upstream?ms=300&x=1",\n'
        '  { path = "/validate", method = "POST", body_file = "batch.json", weight = 3 }]\n'
    )
    scenario = load_scenario(path)
    assert scenario.endpoint_labels() == ("journey",)
    get, post = scenario.requests_for("journey")
    assert get.path == "/io/upstream?ms=30&x=1"  # the wait scaled by time_scale
    assert (post.method, post.body, post.weight, post.label) == (
        "POST",
        '{"events": []}',
        3,
        "POST /validate",
    )
    unmixed = scenario.model_copy(update={"mix": None})
    assert unmixed.endpoint_labels() == ("/io/upstream?ms=30&x=1", "POST /validate")
    assert [c.endpoint for c in plan(unmixed, ["t"], seed=1)[0].cells] == list(unmixed.endpoint_labels())


def test_a_bad_endpoint_entry_says_what_an_endpoint_is(tmp_path: Path) -> None:
    path, message = scenario_error(tmp_path, replaced(SCENARIO, "endpoints", "endpoints = [3]"))
    assert message == f"{path}: endpoints[0]: must be a path or a table with a path, got 3"
    path, message = scenario_error(
        tmp_path,
        replaced(SCENARIO, "endpoints", 'endpoints = [{ path = "/v", method = "GET", body_file = "nope" }]'),
    )
    assert message.startswith(f"{path}: endpoints[0].body_file: cannot read ")
    path, message = scenario_error(
        tmp_path, replaced(SCENARIO, "endpoints", 'endpoints = ["/json"]\ndriver = "wrk"\nmix = "m"')
    )
    assert message == f"{path}: driver: 'wrk' sends one GET per cell: no mix, no POST"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("workers = { a = 100000 }", "workers.a: must be <= 1024, got 100000"),
        ("workers = { a = true }", "workers.a: must be an integer, got True"),
        ("concurrency = [true]", "concurrency[0]: must be an integer, got True"),
        ("concurrency = [8.0]", "concurrency[0]: must be an integer, got 8.0"),
        ('model = "open"\nrates = [100, true]', "rates[1]: must be a number, got True"),
        ("repeats = true", "repeats: must be an integer, got True"),
        ("duration_s = true", "duration_s: must be a number, got True"),
        ("seed = true", "seed: must be an integer, got True"),
        ("seed = 9223372036854775808", "seed: must be <= 9223372036854775807, got 9223372036854775808"),
        ("timeout_s = 1e9", "timeout_s: must be <= 86400, got 1000000000.0"),
        ("warmup_s = 1e9", "warmup_s: must be <= 86400, got 1000000000.0"),
        ("slo = { p99_ms = true }", "slo.p99_ms: must be a number, got True"),
        ("saturation = { bisect_steps = false }", "saturation.bisect_steps: must be an integer, got False"),
        ('mix = ""', "mix: must have at least 1 character(s), got ''"),
        (
            'endpoints = [{ path = "/v", content_type = "a\\r\\nX-Evil: 1" }]',
            "endpoints[0].content_type: must be printable ASCII without line breaks or spaces at either end, "
            "got 'a\\r\\nX-Evil: 1'",
        ),
        (
            '[[stages]]\nkind = "constant"\nduration_s = 2\nconcurrency = true',
            "stages[0].concurrency: must be an integer, got True",
        ),
    ],
)
def test_a_value_beyond_its_bound_or_of_the_wrong_kind_is_refused(
    tmp_path: Path, line: str, expected: str
) -> None:
    key = line.split(" =")[0]
    text = replaced(SCENARIO, key, line) if f"{key} =" in SCENARIO else SCENARIO + line + "\n"
    path, message = scenario_error(tmp_path, text)
    assert message == f"{path}: {expected}"


def test_more_levels_than_the_bound(tmp_path: Path) -> None:
    line = f"concurrency = {list(range(1, 102))}"
    path, message = scenario_error(tmp_path, replaced(SCENARIO, "concurrency", line))
    assert message.startswith(f"{path}: concurrency: must have at most 100 item(s), got [1, 2, 3")
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("concurrency = [8, 8, 8]", "concurrency[1]: the same cell as concurrency[0] ('c8' in its id)"),
        ("concurrency = [1, 8, 1]", "concurrency[2]: the same cell as concurrency[0] ('c1' in its id)"),
        ('model = "open"\nrates = [100, 100.0]', "rates[1]: the same cell as rates[0] ('rate100' in its id)"),
        (
            'model = "open"\nrates = [5, 100, 100.0000001]',
            "rates[2]: the same cell as rates[1] ('rate100' in its id)",
        ),
    ],
)
def test_a_level_given_twice_is_refused(tmp_path: Path, line: str, expected: str) -> None:
    text = replaced(SCENARIO, "concurrency", line)
    path, message = scenario_error(tmp_path, text)
    assert message == f"{path}: {expected}: list each level once"


def test_two_endpoints_with_one_cell_id_are_refused(tmp_path: Path) -> None:
    text = replaced(SCENARIO, "endpoints", 'endpoints = ["/a-b", "/a_b"]')
    path, message = scenario_error(tmp_path, text)
    assert message == (
        f"{path}: endpoints[1]: the same cell as endpoints[0] ('a-b' in its id): give each a distinct name"
    )


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_a_body_file_outside_the_scenarios_folder_is_refused(tmp_path: Path, where: str) -> None:
    folder = tmp_path / "scenarios"
    (folder / "bodies").mkdir(parents=True)
    secret = tmp_path / "secret.json"
    secret.write_text('{"secret": 1}')
    (folder / "bodies" / "ok.json").write_text("{}")
    (folder / "bodies" / "link.json").symlink_to(secret)
    given = {"parent": "../secret.json", "absolute": str(secret), "symlink": "bodies/link.json"}[where]
    entry = f'{{ path = "/v", method = "POST", body_file = "{given}" }}'
    path, message = scenario_error(folder, replaced(SCENARIO, "endpoints", f"endpoints = [{entry}]"))
    assert message == (
        f"{path}: endpoints[0].body_file: must be a file in the scenario's folder ({folder}) or below it, "
        f"got {given!r}"
    )
    inside = entry.replace(given, "bodies/ok.json")
    (folder / "fine.toml").write_text(replaced(SCENARIO, "endpoints", f"endpoints = [{inside}]"))
    assert load_scenario(folder / "fine.toml").requests()[0].body == "{}"


def test_the_target_load_of_the_cost_defaults_to_10000_and_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    assert load_scenario(path).target_requests_per_second == 10_000.0
    path.write_text(SCENARIO + "target_requests_per_second = 15000\n")
    assert load_scenario(path).target_requests_per_second == 15_000.0
    _, message = scenario_error(tmp_path, SCENARIO + "target_requests_per_second = 0\n")
    assert message.endswith("target_requests_per_second: must be > 0, got 0")
