"""The concurrency primitives the client is written against: threads flavour.

Same names as ``pyliftbridge._async._backend``; see there.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
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

Future = concurrent.futures.Future
monotonic = time.monotonic


def sleep(seconds: float) -> None:
    """Sleep for ``seconds``."""
    time.sleep(max(0.0, seconds))


class Mutex:
    """A lock guarding state shared between threads."""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


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
    """A counting semaphore whose acquire can time out."""

    def __init__(self, value: int) -> None:
        self._sem = threading.Semaphore(value)

    def acquire(self, timeout: float | None = None) -> bool:
        return self._sem.acquire(timeout=None if timeout is None else max(0.0, timeout))

    def release(self) -> None:
        self._sem.release()


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
    return concurrent.futures.Future()


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
