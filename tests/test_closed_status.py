"""The closed model's measured connection peak, and which statuses count as success.

Real servers on 127.0.0.1: :class:`ControlledServer` (it takes every connection), and
:class:`FixedServer`, which answers every request with one status and takes at most
``accept`` connections: it listens with a backlog of 0 and never accepts more, so
further connections wait unanswered in the kernel's queue or are never established.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from types import TracebackType

import pytest
from controlled_server import ControlledServer

from harness.load import ClosedLoad, run_closed
from harness.load.arrivals import OpenLoad
from harness.load.open import run_open
from harness.load.requests import HttpRequest
from harness.model import ConfigError, Errors, load_scenario
from harness.model.records import classes_of


class FixedServer:
    """Answers every request with ``status``, on at most ``accept`` connections (None: all)."""

    def __init__(self, status: int = 200, accept: int | None = None) -> None:
        self.status = status
        self.accept = accept
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0 if accept is not None else 128)
        self.port: int = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def __enter__(self) -> FixedServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            for conn in [*self._conns, self._sock]:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()

    def _accept(self) -> None:
        accepted = 0
        while self.accept is None or accepted < self.accept:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            accepted += 1
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        head = f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\n"
        if 300 <= self.status < 400:
            head += "Location: /elsewhere\r\n"
        answer = (head + "\r\n").encode("ascii")
        buffer = b""
        try:
            while chunk := conn.recv(65536):
                buffer += chunk
                while b"\r\n\r\n" in buffer:  # the drivers' GETs carry no body
                    _, buffer = buffer.split(b"\r\n\r\n", 1)
                    conn.sendall(answer)
        except OSError:
            return


def closed(port: int, concurrency: int, **kw: object) -> ClosedLoad:
    options: dict[str, object] = {"warmup_s": 0.2, "duration_s": 0.8, **kw}
    return ClosedLoad(host="127.0.0.1", port=port, path="/ok", concurrency=concurrency, **options)  # type: ignore[arg-type]


def test_the_closed_peak_is_what_a_normal_server_accepted() -> None:
    with ControlledServer(delay_s=0.005) as server:
        result = run_closed(closed(server.port, 5))
    assert result.connections_peak == 5
    assert result.ok > 0 and result.errors["status"] == 0


def test_the_closed_peak_counts_established_connections_not_configured_ones() -> None:
    # 2 connections served; the rest wait in a full accept queue (unanswered, they time out)
    # or are never established (their SYNs dropped): the peak is measured, below 6.
    with FixedServer(accept=2) as server:
        result = run_closed(closed(server.port, 6, warmup_s=0.6, duration_s=1.0, timeout_s=0.25))
    assert result.ok > 0
    assert 2 <= result.connections_peak < 6
    assert result.errors["connect"] + result.errors["timeout"] > 0


def test_a_redirect_is_an_error_of_class_3xx_unless_the_endpoint_expects_it() -> None:
    with FixedServer(status=302) as server:
        default = run_closed(closed(server.port, 2))
        expected = run_closed(closed(server.port, 2, requests=(HttpRequest("/ok", status=302),)))
        opened = run_open(
            OpenLoad(host="127.0.0.1", port=server.port, path="/ok", rate=100, warmup_s=0.0, duration_s=0.5)
        )
    assert default.ok == 0 and default.errors["status"] > 0
    assert default.error_statuses == {302: default.errors["status"]}
    by_status = {str(k): v for k, v in default.error_statuses.items()}
    assert classes_of(by_status) == {"3xx": default.errors["status"]}
    assert expected.ok > 0 and expected.errors["status"] == 0 and expected.error_statuses == {}
    assert opened.ok == 0 and opened.answered_in_window == 0
    assert opened.error_statuses == {302: opened.errors["status"]} and opened.errors["status"] > 0


def test_a_declared_status_makes_other_statuses_errors() -> None:
    with FixedServer(status=200) as server:
        result = run_closed(closed(server.port, 1, requests=(HttpRequest("/ok", status=201),)))
    assert result.ok == 0 and result.error_statuses == {200: result.errors["status"]}


@pytest.mark.parametrize("status", [200, 204])
def test_a_2xx_server_is_all_successes(status: int) -> None:
    with FixedServer(status=status) as server:
        result = run_closed(closed(server.port, 2))
    assert result.ok > 0 and result.errors == {"status": 0, "connect": 0, "read": 0, "timeout": 0}


def test_errors_count_by_class_and_older_records_get_their_classes() -> None:
    assert classes_of({"503": 4, "302": 2, "301": 1, "101": 1}) == {"1xx": 1, "3xx": 3, "5xx": 4}
    stored = Errors.model_validate({"status": 3, "by_status": {"502": 2, "404": 1}})
    assert stored.by_class == {"4xx": 1, "5xx": 2}
    assert Errors.model_validate({"status": 0}).by_class == {}


def test_an_http_request_checks_its_status() -> None:
    assert HttpRequest("/a").ok_statuses == (200, 300)
    assert HttpRequest("/a", status=302).ok_statuses == (302, 303)
    with pytest.raises(ValueError, match="status must be an HTTP status from 100 to 599, got 600"):
        HttpRequest("/a", status=600)


SCENARIO = 'description = "x"\nconcurrency = [1]\nwarmup_s = 0\nduration_s = 1\n'


def test_a_scenario_endpoint_may_declare_its_status(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO + 'endpoints = [{ path = "/login", status = 302 }]\n')
    (spec,) = load_scenario(path).requests_for("/login")
    assert spec.status == 302
    path.write_text(SCENARIO + 'endpoints = [{ path = "/login", status = 99 }]\n')
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert str(caught.value) == f"{path}: endpoints[0].status: must be an HTTP status from 100 to 599, got 99"
    path.write_text(SCENARIO + 'driver = "wrk"\nendpoints = [{ path = "/login", status = 302 }]\n')
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert str(caught.value) == (
        f"{path}: driver: only the native driver checks an endpoint's declared status; 'wrk' cannot"
    )
