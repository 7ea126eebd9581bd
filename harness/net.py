"""Loopback addresses and free ports (the bottom layer: imports nothing of the harness)."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def http_origin(host: str, port: int) -> str:
    """``http://host:port``: an IPv6 address in brackets (given with or without them)."""
    bare = host.strip("[]")
    shown = f"[{bare}]" if ":" in bare else bare
    return f"http://{shown}:{port}"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` right now (IPv4 or IPv6, brackets allowed); the kernel picks it."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((bare, 0))
        port: int = sock.getsockname()[1]
        return port
