"""Reading target and scenario files, and saying in a person's words what is wrong in them.

:func:`load_target`, :func:`load_scenario` and :func:`discover_targets` read TOML
into the records of :mod:`harness.model.config` and :mod:`harness.model.scenario`;
every problem raises :class:`ConfigError` naming the file and the key, one line
per problem (``scenarios/x.toml: concurrency[1]: must be >= 1, got -5``).
:func:`suggest` phrases "did you mean" hints. This module imports only those two
modules of the harness.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Iterable, Sized
from pathlib import Path

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from harness.model.config import TargetConfig
from harness.model.scenario import Scenario


class ConfigError(Exception):
    """A target or scenario file is missing or invalid; the message names the file."""


_MAX_CONFIG_BYTES = 1 << 20


def read_toml(path: Path) -> dict[str, object]:
    """Parse a TOML file. Raises ConfigError naming the file on any problem."""
    try:
        # A size cap, so that a device or a huge file given by mistake fails quickly.
        with path.open("rb") as handle:
            raw = handle.read(_MAX_CONFIG_BYTES + 1)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, not a TOML file") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:  # a NUL byte in the path
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {_MAX_CONFIG_BYTES} bytes, not a configuration file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from exc
    except ValueError as exc:  # int()'s digit limit, which tomllib lets through
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def suggest(name: str, known: Iterable[str]) -> str:
    """The closest known names as a phrase to append to an error, or ``""``.

    ``suggest("fastapi-uvicon", ["fastapi-uvicorn", "flask-gunicorn"])`` ->
    ``" (did you mean 'fastapi-uvicorn'?)"``. Closeness is difflib's ratio, cutoff 0.6.
    """
    matches = [repr(m) for m in difflib.get_close_matches(name, list(known), n=3)]
    if not matches:
        return ""
    listed = " or ".join(matches) if len(matches) < 3 else f"{matches[0]}, {matches[1]} or {matches[2]}"
    return f" (did you mean {listed}?)"


_MAX_GOT_CHARS = 60

# What pydantic's error types expect, phrased for a person editing a TOML file;
# ``{...}`` are filled from the error's ``ctx``.
_EXPECTED = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "literal_error": "must be one of {expected}",
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "string_too_short": "must have at least {min_length} character(s)",
    "string_too_long": "must have at most {max_length} character(s)",
}


def _key_path(loc: tuple[int | str, ...]) -> str:
    """``("concurrency", 1)`` -> ``concurrency[1]``; ``("workers", "a b")`` -> ``workers."a b"``."""
    parts = []
    for part in loc:
        if isinstance(part, str) and part.startswith("<"):  # a union's tag, not a key
            continue
        if isinstance(part, int):
            parts.append(f"[{part}]")
            continue
        key = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part)
        parts.append(f".{key}" if parts else key)
    return "".join(parts) or "(file)"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_GOT_CHARS else text[: _MAX_GOT_CHARS - 3] + "..."


def _bound(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _expected(error: ErrorDetails, known_keys: Iterable[str]) -> str:
    """What the key should hold, and what it holds: ``must be >= 1, got -5``."""
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "levels":  # a rule across keys; the message names the key
        return error["msg"].split(": ", 1)[1]
    if kind == "missing":
        return "required, missing"
    if kind == "extra_forbidden":
        known = list(known_keys)
        hint = suggest(str(error["loc"][-1]), known) or f" (known keys: {', '.join(known)})"
        return "unknown key" + hint
    if kind in _EXPECTED:
        phrase = _EXPECTED[kind].format(**{name: _bound(v) for name, v in ctx.items()})
    elif kind == "value_error":
        phrase = str(ctx["error"])
    else:
        phrase = error["msg"].replace("Input should be", "must be")
    return f"{phrase}, got {_shown(error['input'])}"


def _after_item_errors(error: ErrorDetails) -> bool:
    # pydantic checks a list's min_length after dropping its invalid items, so a
    # list of bad items is also "too short"; the item errors say it better.
    given = error["input"]
    return (
        error["type"] == "too_short"
        and isinstance(given, Sized)
        and len(given) >= error.get("ctx", {}).get("min_length", 0)
    )


def set_elsewhere(model: type[BaseModel]) -> dict[str, str]:
    """The keys of ``model`` that a file cannot set, each with what sets it (``json_schema_extra``
    ``set_by``, e.g. ``--quick``)."""
    found = {}
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get("set_by"), str):
            found[name] = str(extra["set_by"])
    return found


def file_keys(model: type[BaseModel]) -> list[str]:
    """The keys a file may give for ``model``, in the model's order."""
    elsewhere = set_elsewhere(model)
    return [name for name in model.model_fields if name not in elsewhere]


def explain(path: Path, exc: ValidationError, model: type[BaseModel]) -> ConfigError:
    """One line per problem, ``<file>: <key>: <expected>, got <value>``, e.g.
    ``scenarios/x.toml: concurrency[1]: must be >= 1, got -5``."""
    return ConfigError(
        "\n".join(
            f"{path}: {_error_key(error)}: {_expected(error, file_keys(model))}"
            for error in exc.errors()
            if not _after_item_errors(error)
        )
    )


def _error_key(error: ErrorDetails) -> str:
    """The key a problem is about; a rule across keys names it, relative to where it was checked."""
    if error["type"] != "levels":
        return _key_path(error["loc"])
    key = str(error.get("ctx", {})["key"])
    return f"{_key_path(error['loc'])}.{key}" if error["loc"] else key


def load_target(directory: Path) -> TargetConfig:
    """Read ``directory/target.toml``; the target's name is the folder name.

    Raises ConfigError naming the file and key on any problem.
    """
    path = directory / "target.toml"
    data = read_toml(path)
    data.setdefault("name", directory.name)
    try:
        return TargetConfig.model_validate(data)
    except ValidationError as exc:
        raise explain(path, exc, TargetConfig) from exc


def load_scenario(path: Path) -> Scenario:
    """Read a scenario file; its name defaults to the file's stem.

    Raises ConfigError naming the file and key on any problem.
    """
    data = read_toml(path)
    data.setdefault("name", path.stem)
    for key, setter in set_elsewhere(Scenario).items():
        if key in data:
            raise ConfigError(f"{path}: {key}: set by {setter}, not by a file")
    _read_bodies(path, data)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise explain(path, exc, Scenario) from exc


def _read_bodies(path: Path, data: dict[str, object]) -> None:
    """Read each endpoint's ``body_file`` (relative to the scenario file) into its ``body``.

    A ``body_file`` must be in the scenario file's folder or below it, symbolic links
    resolved: a scenario cannot send a file from elsewhere (``../../etc/passwd``,
    an absolute path). Raises ConfigError.
    """
    folder = path.parent.resolve()
    endpoints = data.get("endpoints")
    if not isinstance(endpoints, list):
        return
    for index, entry in enumerate(endpoints):
        if not isinstance(entry, dict) or not isinstance(entry.get("body_file"), str):
            continue
        if entry.get("body") is not None:
            raise ConfigError(f"{path}: endpoints[{index}]: give body or body_file, not both")
        body_path = path.parent / entry["body_file"]
        try:
            inside = body_path.resolve().is_relative_to(folder)
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
            raise ConfigError(
                f"{path}: endpoints[{index}].body_file: cannot read {body_path}: {exc}"
            ) from exc
        if not inside:
            raise ConfigError(
                f"{path}: endpoints[{index}].body_file: must be a file in the scenario's folder "
                f"({folder}) or below it, got {entry['body_file']!r}"
            )
        try:
            size = body_path.stat().st_size
            if size > _MAX_CONFIG_BYTES:
                raise ConfigError(f"{path}: endpoints[{index}].body_file: {body_path} is over 1 MiB")
            entry["body"] = body_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{path}: endpoints[{index}].body_file: cannot read {body_path}: {exc}"
            ) from exc


def discover_targets(root: Path) -> dict[str, TargetConfig]:
    """Every ``root/<name>/target.toml``, by name, sorted; the upstream included.

    Raises ConfigError on the first invalid file, and when ``root`` is not a folder or
    holds no target.
    """
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder of targets")
    found = {path.parent.name: load_target(path.parent) for path in sorted(root.glob("*/target.toml"))}
    if not found:
        raise ConfigError(f"{root}: no targets in it (each is a folder <name>/ with a target.toml)")
    return found
