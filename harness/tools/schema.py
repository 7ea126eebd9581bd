"""``make schema``: the results format as JSON Schema files, generated from the models.

Writes ``docs/schema/manifest.schema.json`` (a run's ``manifest.json``,
:class:`~harness.model.RunManifest`) and ``docs/schema/measurement.schema.json`` (one line
of ``measurements.jsonl``, :class:`~harness.model.Measurement`), JSON Schema 2020-12, in
the shape the files are written (pydantic's serialization mode). Each names the results
schema version in its ``$id`` (``urn:gateway-bench:results:<version>:<name>``) and
title; a field's ``description`` is its pydantic ``Field(description=...)``.

``--check`` writes nothing: it exits 1 with one line when a committed file is missing or
differs from what the models generate (run ``make schema`` then), 0 when all match.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.model import SCHEMA_VERSION, Measurement, RunManifest
from harness.results import write_atomic

DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_FOLDER = Path("docs/schema")
MODELS: dict[str, tuple[type[BaseModel], str]] = {
    "manifest": (RunManifest, "manifest.json"),
    "measurement": (Measurement, "one line of measurements.jsonl"),
}
"""Schema name -> the model it is generated from and the stored file it describes."""


def schema_of(name: str) -> dict[str, Any]:
    """The JSON Schema of ``MODELS[name]`` for the current ``SCHEMA_VERSION``; raises KeyError."""
    model, stored = MODELS[name]
    generated = model.model_json_schema(mode="serialization")
    generated.pop("title", None)
    return {
        "$schema": DIALECT,
        "$id": f"urn:gateway-bench:results:{SCHEMA_VERSION}:{name}",
        "title": f"Gateway Bench results schema {SCHEMA_VERSION}: {stored} ({model.__name__})",
        **generated,
    }


def file_name(name: str) -> str:
    """``manifest`` -> ``manifest.schema.json``."""
    return f"{name}.schema.json"


def generated_files() -> dict[str, str]:
    """File name -> the text the models generate (2-space indented JSON, one final newline)."""
    return {file_name(name): json.dumps(schema_of(name), indent=2) + "\n" for name in MODELS}


def stale_files(folder: Path) -> list[str]:
    """Names of the files in ``folder`` that are missing or differ from :func:`generated_files`."""
    stale = []
    for name, text in generated_files().items():
        path = folder / name
        try:
            current = path.read_text(encoding="utf-8")
        except (OSError, ValueError):
            current = None
        if current != text:
            stale.append(name)
    return stale


def write(folder: Path) -> list[Path]:
    """Write every schema file into ``folder`` (created if missing); return the paths written.

    Raises OSError when a file cannot be written."""
    written = []
    for name, text in generated_files().items():
        write_atomic(folder / name, text)
        written.append(folder / name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.tools.schema",
        description="Write the results format's JSON Schema files, generated from the models.",
    )
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_FOLDER, help="folder of the schema files (default: docs/schema)"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the files differ from the models"
    )
    args = parser.parse_args(argv)
    folder: Path = args.dir
    if args.check:
        stale = stale_files(folder)
        if stale:
            names = ", ".join(str(folder / name) for name in stale)
            print(f"{names}: out of date with the models (run `make schema`)", file=sys.stderr)
            return 1
        print(f"{folder}: the schema files match the models (results schema {SCHEMA_VERSION})")
        return 0
    try:
        written = write(folder)
    except OSError as exc:
        print(f"error: cannot write the schema files in {folder}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
