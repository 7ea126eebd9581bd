"""Your own app as targets: ``--app NAME=wsgi:MODULE:CALLABLE`` launched under each server the stacks use.

A WSGI app runs under Gunicorn's sync, gthread and gevent workers and under Granian;
an ASGI app under Uvicorn, Hypercorn, Granian, Daphne and Gunicorn with Uvicorn's
worker. Each server is set up as the shipped stack on it is (targets/*/: the same
worker class, threads, backlog, keep-alive and default worker count, with the same
rule for it), so the user's app is measured as the stacks are. The targets are named
``NAME-<server>`` (``orders-gunicorn``, ``orders-uvicorn``).

``MODULE`` is a dotted module importable from the current folder, or a file
(``examples/orders-flask/app.py``): the server then runs in that file's folder. The
app runs with the harness's Python, which has every server and the frameworks the
stacks use; a package your app needs beyond those goes into the harness's virtual
environment (``.venv/bin/pip install -r requirements.txt``). Your app is not checked
against the contract: it counts as started when ``ready_path`` (a GET endpoint of the
scenario) answers at all, and must then answer each of the scenario's endpoints once
with its success status before any load (a wrong answer fails its cells, saying why).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.model.config import Interface, SettingValue, TargetConfig
from harness.model.files import ConfigError

YOUR_APP = "your app"
"""The ``framework`` of every target that is the user's own app (``--url`` or ``--app``)."""

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,23}")
"""An app's name: short enough that two of its target names make a path's name (100 characters)."""
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_SPEC = "NAME=wsgi:MODULE:CALLABLE or NAME=asgi:MODULE:CALLABLE"


@dataclass(frozen=True)
class YourApp:
    """One ``--app``: its name, interface, the module (dotted) and callable, and the folder it runs in."""

    name: str
    interface: Interface
    module: str
    callable: str
    directory: Path

    @property
    def target(self) -> str:
        """``MODULE:CALLABLE``, as every server takes it."""
        return f"{self.module}:{self.callable}"


@dataclass(frozen=True)
class Server:
    """How one server runs an app: the start command (``{app}`` is ``MODULE:CALLABLE``) and its setup.

    Mirrors the shipped stack named in ``like`` (its gunicorn.conf.py, hypercorn.toml
    or command line): worker class, threads, backlog, keep-alive, default workers.
    """

    key: str
    server: str
    worker_model: str
    command: str
    default_workers: int
    workers_rule: str
    like: str
    settings: dict[str, SettingValue] = field(default_factory=dict)


_GUNICORN = "{python} -m gunicorn --bind {host}:{port} --workers {workers} --backlog 2048 --timeout 30 "
_GUNICORN += "--graceful-timeout 30 --log-level warning --worker-tmp-dir /dev/shm "
_TWO_CORES = "Gunicorn docs, 'How Many Workers?': (2 x cores) + 1; the target is given 1 core"
_ONE_PER_CORE = "one event-loop worker process per core; the target is given 1 core"
_GRANIAN = "{python} -m granian --host {host} --port {port} --workers {workers} --backlog 2048 "
_GRANIAN += "--log-level warning --no-access-log "
_GRANIAN_RULE = "Granian docs, 'Workers and threads': as many workers as cores; the target is given 1 core"

WSGI_SERVERS = (
    Server(
        "gunicorn",
        "gunicorn",
        "sync: one request at a time per worker process",
        _GUNICORN + "--worker-class sync --keep-alive 2 {app}",
        3,
        _TWO_CORES,
        "flask-gunicorn",
        {"worker_class": "sync", "threads": 1, "keepalive_s": 2},
    ),
    Server(
        "gunicorn-gthread",
        "gunicorn",
        "gthread: 4 threads per worker process, each serving one request at a time",
        _GUNICORN + "--worker-class gthread --threads {threads} --worker-connections 1000 "
        "--keep-alive 5 {app}",
        3,
        _TWO_CORES + "; threads 4 for I/O-bound requests",
        "flask-gunicorn-gthread",
        {"worker_class": "gthread", "threads": 4, "keepalive_s": 5},
    ),
    Server(
        "gunicorn-gevent",
        "gunicorn",
        "gevent: greenlets per worker process (the standard library monkey-patched)",
        _GUNICORN + "--worker-class gevent --worker-connections 1000 --keep-alive 5 {app}",
        3,
        _TWO_CORES,
        "flask-gunicorn-gevent",
        {"worker_class": "gevent", "worker_connections": 1000, "keepalive_s": 5},
    ),
    Server(
        "granian",
        "granian",
        "Granian: a Rust runtime per worker process, the app on a pool of blocking threads",
        _GRANIAN + "--interface wsgi {app}",
        1,
        _GRANIAN_RULE,
        "flask-granian",
        {"blocking_threads": "Granian's default"},
    ),
)
"""The servers a WSGI app is launched under."""

ASGI_SERVERS = (
    Server(
        "uvicorn",
        "uvicorn",
        "uvicorn: one asyncio event loop (uvloop) per worker process",
        "{python} -m uvicorn --host {host} --port {port} --workers {workers} --loop uvloop --http httptools "
        "--backlog 2048 --no-access-log --log-level warning {app}",
        1,
        "Uvicorn docs, 'Deployment': " + _ONE_PER_CORE,
        "fastapi-uvicorn",
    ),
    Server(
        "hypercorn",
        "hypercorn",
        "hypercorn: one uvloop event loop per worker process",
        "{python} -m hypercorn --bind {host}:{port} --workers {workers} --worker-class uvloop "
        "--backlog 2048 --keep-alive 5 {app}",
        1,
        _ONE_PER_CORE,
        "quart-hypercorn",
    ),
    Server(
        "granian",
        "granian",
        "Granian: a Rust runtime and an asyncio event loop (uvloop) per worker process",
        _GRANIAN + "--interface asgi --loop uvloop {app}",
        1,
        _GRANIAN_RULE,
        "fastapi-granian",
    ),
    Server(
        "daphne",
        "daphne",
        "daphne: one Twisted reactor on an asyncio event loop per process, sharing one socket",
        "{python} {daphne_serve} --host {host} --port {port} --workers {workers} -- -v 0 {app}",
        1,
        "Channels docs, 'Deploying': roughly as many Daphne processes as CPUs; the target is given 1 core",
        "django-daphne",
    ),
    Server(
        "gunicorn-uvicornworker",
        "gunicorn + uvicorn",
        "Gunicorn managing worker processes that each run a uvicorn event loop",
        _GUNICORN + "--worker-class uvicorn_worker.UvicornWorker --keep-alive 5 {app}",
        1,
        "Uvicorn docs, 'Deployment': " + _ONE_PER_CORE,
        "django-gunicorn-uvicornworker",
    ),
)
"""The servers an ASGI app is launched under."""


def parse_app(raw: str, *, cwd: Path) -> YourApp:
    """One ``--app NAME=INTERFACE:MODULE:CALLABLE``; a MODULE ending in ``.py`` is a file under ``cwd``.

    Raises ConfigError (one line) for a missing part, a bad name, an interface other
    than wsgi or asgi, a module that is neither a dotted name nor an existing ``.py``
    file, or a callable that is not an identifier.
    """
    name, sep, rest = raw.partition("=")
    parts = rest.rsplit(":", 1)
    head = parts[0].split(":", 1)
    if not sep or len(parts) != 2 or len(head) != 2:
        raise ConfigError(f"--app {raw!r}: expected {_SPEC}")
    (interface, module), callable_ = head, parts[1]
    if not _NAME.fullmatch(name):
        raise ConfigError(f"--app {raw!r}: a name is lowercase letters, digits, '.', '_' or '-' (up to 24)")
    if interface not in ("wsgi", "asgi"):
        raise ConfigError(f"--app {raw!r}: the interface is wsgi or asgi, got {interface!r}")
    if not callable_.isidentifier():
        raise ConfigError(f"--app {raw!r}: {callable_!r} is not the name of a callable")
    directory = cwd
    if module.endswith(".py"):
        path = (cwd / module).resolve()
        if not path.is_file():
            raise ConfigError(f"--app {raw!r}: {module}: file not found")
        directory, module = path.parent, path.stem
    if not _DOTTED.fullmatch(module):
        raise ConfigError(f"--app {raw!r}: {module!r} is not a module name (a.b.c) or a .py file")
    if " " in str(directory):  # a server's command line is split on spaces
        raise ConfigError(f"--app {raw!r}: {directory}: a folder with a space in its path cannot be served")
    return YourApp(name, interface, module, callable_, directory)  # type: ignore[arg-type]


def app_targets(app: YourApp, *, ready_path: str, daphne_serve: Path) -> dict[str, TargetConfig]:
    """The targets of ``app``, one per server of its interface, named ``<app>-<server key>``.

    ``ready_path``: the GET path that answers 200 once the app is up. ``daphne_serve``:
    the script that runs Daphne with several workers on one socket
    (targets/django-daphne/serve.py).
    """
    servers = WSGI_SERVERS if app.interface == "wsgi" else ASGI_SERVERS
    out: dict[str, TargetConfig] = {}
    for server in servers:
        name = f"{app.name}-{server.key}"
        out[name] = TargetConfig(
            name=name,
            description=f"your app {app.name} ({app.target} in {app.directory}) on {server.server}",
            framework=YOUR_APP,
            server=server.server,
            interface=app.interface,
            worker_model=server.worker_model,
            command=server.command.replace("{app}", app.target).replace("{daphne_serve}", str(daphne_serve)),
            default_workers=server.default_workers,
            workers_rule=server.workers_rule,
            app_dir=str(app.directory),
            ready_path=ready_path,
            ready_any_answer=True,
            verify_contract=False,
            settings={**server.settings, "your_app": app.name, "set_up_as": server.like},
        )
    return out
