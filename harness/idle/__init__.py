"""Idle connections held on a stack, and the memory each costs it (a scenario endpoint's ``kind``
``idle-http`` or ``idle-websocket``).

Modules, bottom first: ``method`` (the constants, IdleError), ``memory`` (reading a process
tree's memory, waiting until it is quiet), ``driver`` (the spawned driver process, which
stops between its warm-up and its hold while the memory is read), ``hold`` (one cell:
:func:`hold_and_read`).
"""

from harness.idle.hold import IdleHold, hold_and_read, server_connections
from harness.idle.memory import (
    KIB,
    READINGS,
    MemoryReading,
    Reading,
    anonymous_pss_bytes,
    kib_per_connection,
    peak_of,
    read_memory,
    sample_memory,
    wait_quiet,
)
from harness.idle.method import IdleError

__all__ = [
    "KIB",
    "READINGS",
    "IdleError",
    "IdleHold",
    "MemoryReading",
    "Reading",
    "anonymous_pss_bytes",
    "hold_and_read",
    "kib_per_connection",
    "peak_of",
    "read_memory",
    "sample_memory",
    "server_connections",
    "wait_quiet",
]
