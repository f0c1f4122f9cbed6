"""The concurrency primitives the client is written against: threads flavour.

Same names as ``pyliftbridge._async._backend``; see there.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from typing import Any, Callable, TypeVar

from ._light_future import LightFuture

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

Future = concurrent.futures.Future
monotonic = time.monotonic


def sleep(seconds: float) -> None:
    """Sleep for ``seconds``."""
    time.sleep(max(0.0, seconds))


#: A lock guarding state shared between threads (re-entrant). The lock
#: itself, not a wrapper: its ``with`` runs in C, and the publish path takes
#: it several times per message.
Mutex = threading.RLock


class Event:
    """An event with a timed wait."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or until ``timeout``; return whether it is set."""
        return self._event.wait(None if timeout is None else max(0.0, timeout))


class Semaphore:
    """A counting semaphore whose acquire can time out.

    ``threading.Semaphore`` goes through a Python-level Condition on every
    call; this one takes a plain lock (its ``with`` runs in C) and touches
    the Condition only when someone has to wait, which a publisher below its
    in-flight limit never does.
    """

    def __init__(self, value: int) -> None:
        self._value = value
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0

    def acquire(self, timeout: float | None = None) -> bool:
        """Take one unit; wait up to ``timeout`` (None: forever); False if none came."""
        with self._lock:
            if self._value > 0:
                self._value -= 1
                return True
            deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
            self._waiting += 1
            try:
                while self._value <= 0:
                    wait = None if deadline is None else deadline - time.monotonic()
                    if wait is not None and wait <= 0:
                        return False
                    self._cond.wait(wait)
                self._value -= 1
                return True
            finally:
                self._waiting -= 1

    def release(self, n: int = 1) -> None:
        """Give back ``n`` units."""
        with self._lock:
            self._value += n
            if self._waiting:
                self._cond.notify(n)


class Queue:
    """A FIFO with a timed get; ``put`` waits while ``maxsize`` items are queued."""

    def __init__(self, maxsize: int = 0) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)

    def put(self, item: Any) -> None:
        self._queue.put(item)

    def get(self, timeout: float | None = None) -> Any:
        """Return the next item; raise TimeoutError after ``timeout``."""
        try:
            return self._queue.get(timeout=None if timeout is None else max(0.0, timeout))
        except queue.Empty:
            raise TimeoutError from None


class Worker:
    """A background activity: a daemon thread here, an asyncio task in the twin."""

    def __init__(self, thread: threading.Thread) -> None:
        self._thread = thread

    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the worker to finish (threads cannot be cancelled; it is left daemonic)."""
        if self._thread is threading.current_thread():
            return
        self._thread.join(timeout)


def spawn(target: Callable[..., Any], *args: Any, name: str) -> Worker:
    """Run ``target(*args)`` in a daemon thread."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return Worker(thread)


def new_future() -> concurrent.futures.Future[Any]:
    """A future the caller can wait on."""
    return LightFuture()


def wait_future(future: concurrent.futures.Future[T], timeout: float | None = None) -> T:
    """Wait for ``future``'s result; TimeoutError after ``timeout``."""
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        if future.done():
            raise  # the publish itself failed with a TimeoutError subclass
        raise TimeoutError from None


class Lock:
    """A mutual-exclusion lock held across blocking calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
