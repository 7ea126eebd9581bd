"""Headless Chromium driven through the DevTools protocol over a pipe, for the browser tests.

Chromium's ``--remote-debugging-pipe`` reads protocol commands from file
descriptor 3 and writes answers and events to descriptor 4, each message JSON
ended by a NUL byte (the transport Puppeteer uses). That needs no package, no
port and no browser download: only Debian's ``chromium``.
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The flags that work on this kind of machine (see the environment notes): no sandbox as
# root, no GPU, and no background traffic to Google's hosts, which the network refuses.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
)


PIPE = "--remote-debugging-pipe"


def executable() -> str | None:
    """Debian's Chromium, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _above_4(fd: int) -> int:
    """The same pipe end on a descriptor above 4, so that moving it to 3 or 4 cannot clobber another."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class ProtocolError(Exception):
    """Chromium answered a command with an error, or did not answer in time."""


@dataclass
class Page:
    """One tab: its session id and every protocol event it sent, in order."""

    session: str
    events: list[dict[str, Any]] = field(default_factory=list)


class Chromium:
    """A headless Chromium process and its protocol pipe. Use :func:`launch`."""

    def __init__(self, binary: str, profile: Path, log: Path) -> None:
        commands_read, self._commands = (_above_4(fd) for fd in os.pipe())
        self._answers, answers_write = (_above_4(fd) for fd in os.pipe())
        # bash puts the pipe ends on descriptors 3 and 4, where Chromium expects them (dash
        # takes one-digit descriptors only).
        script = f'exec "$0" "$@" 3<&{commands_read} 4>&{answers_write} {commands_read}<&- {answers_write}>&-'
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                ["bash", "-c", script, binary, *FLAGS, f"--user-data-dir={profile}", PIPE],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                pass_fds=(commands_read, answers_write),
                start_new_session=True,
            )
        os.close(commands_read)
        os.close(answers_write)
        self._ids = itertools.count(1)
        self._answered: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._answers, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for raw in messages:
                    message = json.loads(raw)
                    with self._lock:
                        if "id" in message and message["id"] in self._answered:
                            self._answered[message["id"]].put(message)
                        elif "sessionId" in message and message["sessionId"] in self._pages:
                            self._pages[message["sessionId"]].events.append(message)

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        page: Page | None = None,
        timeout_s: float = 30.0,
    ) -> dict[str, Any]:
        """Send one command and wait for its answer's ``result``; raises ProtocolError."""
        number = next(self._ids)
        box: queue.Queue[dict[str, Any]] = queue.Queue()
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if page is not None:
            message["sessionId"] = page.session
        with self._lock:
            self._answered[number] = box
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        try:
            answer = box.get(timeout=timeout_s)
        except queue.Empty:
            raise ProtocolError(f"{method}: no answer within {timeout_s} s") from None
        finally:
            with self._lock:
                del self._answered[number]
        if "error" in answer:
            raise ProtocolError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def new_page(self, width: int, height: int, *, mobile: bool = False) -> Page:
        """A blank tab of ``width`` x ``height`` CSS pixels, recording console, log and network events."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(session)
        with self._lock:
            self._pages[session] = page
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", page=page)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
            page=page,
        )
        return page

    def open(self, page: Page, url: str, timeout_s: float = 30.0) -> None:
        """Navigate and wait for the load event, then for one more frame (layout done)."""
        start = len(page.events)
        self.send("Page.navigate", {"url": url}, page=page)
        deadline = time.monotonic() + timeout_s
        while not any(e["method"] == "Page.loadEventFired" for e in page.events[start:]):
            if time.monotonic() > deadline:
                raise ProtocolError(f"{url}: not loaded within {timeout_s} s")
            time.sleep(0.02)
        self.evaluate(page, "new Promise(done => requestAnimationFrame(() => done(true)))")

    def evaluate(self, page: Page, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            page=page,
        )
        if "exceptionDetails" in result:
            raise ProtocolError(f"evaluate: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, page: Page, path: Path) -> None:
        """Save what the viewport shows as a PNG."""
        data = self.send("Page.captureScreenshot", {"format": "png"}, page=page)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with suppress(ProtocolError, OSError):
            self.send("Browser.close", timeout_s=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=10)
        os.close(self._commands)
        self._reader.join(timeout=5)


@contextmanager
def launch(binary: str, workdir: Path) -> Iterator[Chromium]:
    """Start headless Chromium with a fresh profile under ``workdir``; always stop it."""
    profile = workdir / "profile"
    profile.mkdir(parents=True, exist_ok=True)
    browser = Chromium(binary, profile, workdir / "chromium.log")
    try:
        yield browser
    finally:
        browser.close()
