"""A wake-up at an absolute clock time with microsecond precision, for the open model's arrivals.

uvloop's timers have millisecond resolution, and a delay under 0.5 ms becomes
"call soon": an open-model dispatcher that waits 200 µs between arrivals on
them either sends up to a millisecond late (inflating corrected latency) or
spins the loop (one idle CPU's worth of generator time). A Linux timerfd
armed at the absolute CLOCK_MONOTONIC time (``connection.clock``) wakes the
loop through epoll at the right microsecond instead. Where timerfd is not
available, the alarm falls back to the loop's own timers.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
from collections.abc import Callable

from harness.load.connection import clock

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.timerfd_settime.argtypes = (
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        )
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


class Alarm:
    """Calls ``callback`` once at the clock time given to :meth:`set`; a later ``set`` replaces it.

    A time already past fires on the loop's next iteration. :meth:`close`
    releases the timer; the alarm must be closed before its loop is.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._spec = _Itimerspec()
        self._fd = -1
        if _LIBC is not None:
            self._fd = _LIBC.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if self._fd >= 0:
            loop.add_reader(self._fd, self._fired)

    @property
    def precise(self) -> bool:
        """True when a timerfd, not the loop's millisecond timers, wakes the alarm."""
        return self._fd >= 0

    def set(self, at_ns: int) -> None:
        if self._fd < 0:
            self.cancel()
            self._handle = self._loop.call_later(max(at_ns - clock(), 0) / 1e9, self._callback)
            return
        # A zero it_value would disarm the timer: a time in the past becomes 1 ns after boot.
        seconds, nanoseconds = divmod(max(at_ns, 1), 1_000_000_000)
        self._spec.it_value.tv_sec = seconds
        self._spec.it_value.tv_nsec = nanoseconds
        assert _LIBC is not None
        if _LIBC.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._fd >= 0:
            self._spec.it_value.tv_sec = self._spec.it_value.tv_nsec = 0
            assert _LIBC is not None
            _LIBC.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None)

    def close(self) -> None:
        self.cancel()
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:
            return  # re-armed or cancelled after it became readable
        self._callback()
