"""The concurrency primitives the client is written against: asyncio flavour.

``pyliftbridge._sync._backend`` offers the same names for threads. The client
logic in this package is written once against these names and
``scripts/unasync.py`` turns it into the blocking client.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Coroutine
from typing import Any, Callable, TypeVar

__all__ = [
    "Event",
    "Lock",
    "Future",
    "Mutex",
    "Queue",
    "Semaphore",
    "Worker",
    "monotonic",
    "new_future",
    "sleep",
    "spawn",
    "wait_future",
]

T = TypeVar("T")

Future = asyncio.Future
monotonic = time.monotonic


async def sleep(seconds: float) -> None:
    """Sleep for ``seconds``."""
    await asyncio.sleep(max(0.0, seconds))


class Mutex:
    """Guards state shared between tasks and threads; a no-op on one event loop.

    All client state is touched from the event loop thread only and never
    across an ``await``, so nothing needs locking here; the blocking twin is a
    real lock.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class Event:
    """An event with a timed wait."""

    def __init__(self) -> None:
        # Made on first use: on Python 3.9 an asyncio primitive binds to the
        # loop current at creation, and a client may be built outside any loop.
        self._ev: asyncio.Event | None = None
        self._flag = False

    @property
    def _event(self) -> asyncio.Event:
        if self._ev is None:
            self._ev = asyncio.Event()
            if self._flag:
                self._ev.set()
        return self._ev

    def set(self) -> None:
        self._flag = True
        if self._ev is not None:
            self._ev.set()

    def clear(self) -> None:
        self._flag = False
        if self._ev is not None:
            self._ev.clear()

    def is_set(self) -> bool:
        return self._flag

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or until ``timeout``; return whether it is set."""
        if self._flag:
            return True
        event = self._event
        if timeout is None:
            await event.wait()
            return True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), max(0.0, timeout))
        return self._flag


class Semaphore:
    """A counting semaphore whose acquire can time out."""

    def __init__(self, value: int) -> None:
        self._value = value
        self._s: asyncio.Semaphore | None = None

    @property
    def _sem(self) -> asyncio.Semaphore:
        if self._s is None:
            # Made on first use (see Event).
            self._s = asyncio.Semaphore(self._value)
        return self._s

    async def acquire(self, timeout: float | None = None) -> bool:
        sem = self._sem
        if timeout is None or not sem.locked():
            # No wait_for when a slot is free: it would cost a task and a loop
            # iteration per call, which on the publish path means one write
            # per message instead of one per batch.
            await sem.acquire()
            return True
        try:
            await asyncio.wait_for(sem.acquire(), max(0.0, timeout))
        except asyncio.TimeoutError:
            return False
        return True

    def release(self, n: int = 1) -> None:
        """Give back ``n`` units."""
        sem = self._sem
        for _ in range(n):
            sem.release()


class Queue:
    """A FIFO with a timed get; ``put`` waits while ``maxsize`` items are queued."""

    def __init__(self, maxsize: int = 0) -> None:
        self._maxsize = maxsize
        self._q: asyncio.Queue[Any] | None = None

    @property
    def _queue(self) -> asyncio.Queue[Any]:
        if self._q is None:
            # Made on first use (see Event).
            self._q = asyncio.Queue(self._maxsize)
        return self._q

    async def put(self, item: Any) -> None:
        await self._queue.put(item)

    async def get(self, timeout: float | None = None) -> Any:
        """Return the next item; raise TimeoutError after ``timeout``."""
        queue = self._queue
        if timeout is None or not queue.empty():
            return await queue.get()
        try:
            return await asyncio.wait_for(queue.get(), max(0.0, timeout))
        except asyncio.TimeoutError:
            raise TimeoutError from None


class Worker:
    """A background activity: an asyncio task here, a daemon thread in the twin."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._task = task

    def done(self) -> bool:
        return self._task.done()

    async def join(self, timeout: float | None = None) -> None:
        """Wait for the worker to finish (it is cancelled if the timeout passes)."""
        if self._task is asyncio.current_task():
            return
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        if not self._task.done():
            self._task.cancel()


def spawn(target: Callable[..., Coroutine[Any, Any, Any]], *args: Any, name: str) -> Worker:
    """Run ``target(*args)`` in the background."""
    return Worker(asyncio.get_running_loop().create_task(target(*args), name=name))


def new_future() -> asyncio.Future[Any]:
    """A future the caller can await."""
    return asyncio.get_running_loop().create_future()


async def wait_future(future: Awaitable[T], timeout: float | None = None) -> T:
    """Wait for ``future``'s result; TimeoutError after ``timeout``."""
    if timeout is None or (isinstance(future, asyncio.Future) and future.done()):
        return await future
    shielded = asyncio.shield(future)
    try:
        return await asyncio.wait_for(shielded, timeout)
    except asyncio.TimeoutError:
        if shielded.done() and not shielded.cancelled():
            raise  # the future itself failed with a TimeoutError subclass
        raise TimeoutError from None


class Lock:
    """A mutual-exclusion lock held across awaits."""

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> None:
        if self._lock is None:
            # Created on first use so that it binds to the running loop (3.9).
            self._lock = asyncio.Lock()
        await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        assert self._lock is not None
        self._lock.release()
