"""Your own apps on the command line: ``--url [NAME=]URL`` for apps you started, ``--app`` for apps
the harness launches under each server (:func:`launched_apps`).

``gwbench run --url flask=http://127.0.0.1:8000/orders --url fastapi=http://127.0.0.1:8001/orders``
measures two apps you started, side by side, on the same endpoint. For each one
you may declare (``NAME=VALUE``, repeatable; a bare value with a single unnamed
``--url``): ``--pid`` (its process, to monitor CPU and memory), ``--interface``
(``wsgi`` or ``asgi``: the migration-path table then compares every WSGI app
with every ASGI app) and, for a WSGI app whose workers block, ``--workers`` and
``--threads`` (the Little's-law ceiling needs both; a ceiling is never guessed).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from harness.cli.common import MAX_PID
from harness.load import checked_address
from harness.model import MAX_WORKERS, ConfigError, Scenario, TargetConfig
from harness.model.appservers import YOUR_APP, app_targets, parse_app
from harness.model.config import SettingValue
from harness.run import ExternalTarget

#: The name of the one app of a plain ``--url URL`` (as before names were given).
DEFAULT_NAME = "external"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


def _named(flag: str, values: Sequence[str] | None, names: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE`` entries of a repeatable flag by name; a bare value for the one unnamed app.

    Raises ConfigError for an entry naming no ``--url``, a name given twice, or a bare
    value when the apps have names.
    """
    found: dict[str, str] = {}
    for raw in values or ():
        name, sep, value = raw.partition("=")
        if not sep:
            if names != [DEFAULT_NAME]:
                raise ConfigError(f"{flag} {raw!r}: expected NAME=VALUE, NAME one of the --url names")
            name, value = DEFAULT_NAME, raw
        if name not in names:
            raise ConfigError(f"{flag} {raw!r}: {name!r} is not the name of a --url ({', '.join(names)})")
        if name in found:
            raise ConfigError(f"{flag}: {name!r} given twice")
        found[name] = value
    return found


def _count(flag: str, name: str, value: str | None, high: int) -> int | None:
    """``value`` as a whole number from 1 to ``high``; None when not given. Raises ConfigError."""
    if value is None:
        return None
    if not value.isdigit() or not 1 <= int(value) <= high:
        given = value if name == DEFAULT_NAME else f"{name}={value}"
        raise ConfigError(f"{flag} {given}: must be a whole number from 1 to {high}")
    return int(value)


def _config(
    name: str, url: str, pid: int | None, interface: str | None, workers: int | None, threads: int | None
) -> TargetConfig:
    """How a run's manifest describes an app the user started (nothing here launches it)."""
    blocking = f"{workers} worker(s) x {threads} thread(s)" if workers and threads else None
    settings: dict[str, SettingValue] = {
        "monitored_pid": pid if pid is not None else "none (server CPU and memory not measured)"
    }
    if threads is not None:
        settings["threads"] = threads
    return TargetConfig(
        name=name,
        description=f"your app, started by you, measured at {url}",
        framework=YOUR_APP,
        server="unknown (started by you)",
        interface=interface or "native",  # type: ignore[arg-type]  # checked by the caller
        worker_model=f"declared: {blocking}" if blocking else "unknown (not started by the harness)",
        command="(started by the user) {host}:{port}",
        default_workers=workers or 1,
        workers_rule="declared with --workers" if workers else "not applicable",
        settings=settings,
    )


def your_apps(
    args: argparse.Namespace,
) -> tuple[dict[str, ExternalTarget], str, dict[str, TargetConfig]]:
    """The apps of ``--url`` (and their ``--pid``, ``--interface``, ``--workers``, ``--threads``):
    (where to send load, by name; the one endpoint they share; their configs, by name).

    Raises ConfigError for a URL that is not plain HTTP with a host, a bad or repeated
    name, apps on different endpoints, a declaration naming no app, a process that does
    not exist, a bad interface or count; UnsafeTargetError for a non-loopback host
    without ``--allow-remote``.
    """
    urls: dict[str, str] = {}
    for raw in args.url:
        name, sep, url = raw.partition("=")
        if not sep or "://" in name:
            if len(args.url) > 1:
                raise ConfigError(f"--url {raw!r}: with several apps, name each: --url NAME=URL")
            name, url = DEFAULT_NAME, raw
        if not _NAME.fullmatch(name):
            raise ConfigError(f"--url {raw!r}: a name is lowercase letters, digits, '.', '_' or '-'")
        if name in urls:
            raise ConfigError(f"--url: {name!r} given twice")
        urls[name] = url
    names = list(urls)
    pids = _named("--pid", args.pid, names)
    interfaces = _named("--interface", args.interface, names)
    workers = _named("--workers", args.workers, names)
    threads = _named("--threads", args.threads, names)
    targets: dict[str, ExternalTarget] = {}
    configs: dict[str, TargetConfig] = {}
    endpoints: dict[str, str] = {}
    for name, url in urls.items():
        try:
            parts = urlsplit(url)
            port = parts.port or 80
        except ValueError as exc:
            raise ConfigError(f"--url {url!r}: {exc}") from exc
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"--url {url!r}: expected http://HOST:PORT/PATH (plain HTTP/1.1)")
        # The load goes to the address checked now, not to the name (a name can resolve elsewhere later).
        address = checked_address(parts.hostname, allow_remote=args.allow_remote)
        pid = _count("--pid", name, pids.get(name), MAX_PID)
        try:
            exists = pid is None or psutil.pid_exists(pid)
        except (OverflowError, ValueError):
            exists = False
        if not exists:
            raise ConfigError(f"--pid {pid}: no such process")
        interface = interfaces.get(name)
        if interface not in (None, "wsgi", "asgi"):
            raise ConfigError(f"--interface {name}={interface}: expected wsgi or asgi")
        counts = [
            _count(flag, name, given.get(name), MAX_WORKERS)
            for flag, given in (("--workers", workers), ("--threads", threads))
        ]
        if interface != "wsgi" and any(c is not None for c in counts):
            raise ConfigError(f"--workers/--threads {name}: only for an app declared --interface {name}=wsgi")
        endpoints[name] = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        targets[name] = ExternalTarget(host=address, port=port, pid=pid)
        configs[name] = _config(name, url, pid, interface, *counts)
    if len(set(endpoints.values())) > 1:
        shown = ", ".join(f"{n}: {e}" for n, e in endpoints.items())
        raise ConfigError(f"--url: every app is measured on the same endpoint; got {shown}")
    return targets, endpoints[names[0]], configs


def launched_apps(args: argparse.Namespace, scenario: Scenario, targets_dir: Path) -> dict[str, TargetConfig]:
    """The targets of ``--app NAME=wsgi|asgi:MODULE:CALLABLE`` (repeatable): each app under each
    server of its interface (:mod:`harness.model.appservers`), then ``--targets`` picks among them.

    The app counts as started when the scenario's first GET endpoint answers 200. Raises
    ConfigError for a bad ``--app``, a name given twice, a scenario with no GET endpoint,
    or a ``--targets`` name that is not one of the apps' targets.
    """
    apps = [parse_app(raw, cwd=Path.cwd()) for raw in args.app]
    names = [app.name for app in apps]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"--app: {twice[0]!r} given twice")
    gets = [r.path for r in scenario.requests() if r.method == "GET"]
    if not gets:
        raise ConfigError(f"--app: {args.scenario} has no GET endpoint to tell when your app is up")
    serve = targets_dir / "django-daphne" / "serve.py"
    targets: dict[str, TargetConfig] = {}
    for app in apps:
        targets |= app_targets(app, ready_path=gets[0], daphne_serve=serve)
    if args.targets is None:
        return targets
    wanted = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in targets]
    if unknown or not wanted:
        shown = ", ".join(repr(n) for n in unknown) or repr(args.targets)
        raise ConfigError(f"--targets {shown}: with --app, one of {', '.join(targets)}")
    return {n: targets[n] for n in wanted}
