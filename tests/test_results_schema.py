"""The results format's JSON Schema files (docs/schema/): generated from the models, committed,
described field by field, and what a real run stores validates against them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import REPO
from pydantic import BaseModel

from harness.model import SCHEMA_VERSION, Measurement, RunManifest, records
from harness.tools import schema

SCHEMAS = REPO / "docs" / "schema"
SCENARIO = """
description = "results schema test: one tiny cell"
targets = ["flask-gunicorn"]
endpoints = ["/json"]
concurrency = [1]
warmup_s = 0.1
duration_s = 0.3
"""


def validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator of the committed ``docs/schema/<name>.schema.json``, itself checked as a schema."""
    document = json.loads((SCHEMAS / schema.file_name(name)).read_text())
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


def tool(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "harness.tools.schema", *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def test_the_committed_schema_files_are_what_the_models_generate() -> None:
    for name, text in schema.generated_files().items():
        assert (SCHEMAS / name).read_text() == text, f"{name} is stale: run `make schema`"
    done = tool("--check")
    assert done.returncode == 0, done.stderr
    for name in schema.MODELS:
        document = json.loads((SCHEMAS / schema.file_name(name)).read_text())
        assert document["$id"] == f"urn:gateway-bench:results:{SCHEMA_VERSION}:{name}"
        assert f"results schema {SCHEMA_VERSION}" in document["title"]


def test_check_names_a_stale_or_missing_file_in_one_line_and_exits_1(tmp_path: Path) -> None:
    written = tool("--dir", str(tmp_path))
    assert written.returncode == 0, written.stderr
    assert tool("--check", "--dir", str(tmp_path)).returncode == 0
    manifest = tmp_path / "manifest.schema.json"
    manifest.write_text(manifest.read_text().replace("MiB", "MB"))
    (tmp_path / "measurement.schema.json").unlink()
    done = tool("--check", "--dir", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "manifest.schema.json" in done.stderr and "measurement.schema.json" in done.stderr
    assert "make schema" in done.stderr


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of one tiny cell (flask-gunicorn, /json, c1, 0.3 s), stored by ``python -m harness run``."""
    folder = tmp_path_factory.mktemp("schema-run")
    (folder / "tiny.toml").write_text(SCENARIO)
    argv = [sys.executable, "-m", "harness", "run", str(folder / "tiny.toml"), "--no-verify", "--no-report"]
    argv += ["--results", str(folder / "results")]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (folder / "results").iterdir()
    return run_dir


def test_a_stored_run_validates_against_the_committed_schemas(stored_run: Path) -> None:
    manifest = json.loads((stored_run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    validator("manifest").validate(manifest)
    lines = [json.loads(line) for line in (stored_run / "measurements.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["status"] == "ok" and lines[0]["requests_per_second"] > 0
    measurement = validator("measurement")
    for line in lines:
        measurement.validate(line)
    # The schemas are strict: a line in schema 2's names, or a manifest of schema 2, does not pass.
    old = {("rps" if key == "requests_per_second" else key): value for key, value in lines[0].items()}
    assert not measurement.is_valid(old)
    assert not validator("manifest").is_valid({**manifest, "schema_version": 2})


def record_models() -> set[str]:
    """Names of the result records defined in :mod:`harness.model.records`."""
    return {
        name
        for name, value in vars(records).items()
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == records.__name__
    }


def undescribed(name: str, definition: dict[str, Any]) -> list[str]:
    return [
        f"{name}.{field}" for field, spec in definition["properties"].items() if not spec.get("description")
    ]


@pytest.mark.parametrize("name", list(schema.MODELS))
def test_every_field_of_a_result_record_has_a_description(name: str) -> None:
    document = schema.schema_of(name)
    assert document["description"]
    definitions = {schema.MODELS[name][0].__name__: document, **document["$defs"]}
    ours = record_models()
    missing = [
        field
        for model, definition in definitions.items()
        if model in ours
        for field in undescribed(model, definition)
    ]
    assert not missing, f"fields without a description: {missing}"
    # Records embedded from the configuration (the scenario, a target's config) describe themselves.
    for model, definition in definitions.items():
        assert definition.get("description"), f"{model} has no description"


def first_column_fields(page: str, heading: str) -> set[str]:
    """The field names in the first column of the table under ``heading`` (``latency_ms.p99`` ->
    ``latency_ms``; ``.p50`` continues the previous name and is skipped)."""
    section = page.split(heading, 1)[1].split("\n#", 1)[0]
    cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {token.split(".")[0] for cell in cells for token in re.findall(r"`([a-z][a-z0-9_.]*)`", cell)}


def test_the_results_page_names_every_stored_field_and_only_those() -> None:
    page = (REPO / "docs" / "results-format.md").read_text()
    mentioned = set(re.findall(r"`([a-z][a-z0-9_]*)", page))
    for model in (RunManifest, Measurement):
        assert set(model.model_fields) <= mentioned, set(model.model_fields) - mentioned
    assert first_column_fields(page, "### manifest.json") <= set(RunManifest.model_fields)
    assert first_column_fields(page, "### measurements.jsonl") <= set(Measurement.model_fields)
