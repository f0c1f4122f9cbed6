"""A ``concurrent.futures.Future`` that builds its Condition only when needed.

``publish_async`` returns one future per message. The standard future makes
a ``threading.Condition`` (an RLock and a deque) when it is created and
takes it to be resolved: about half the cost of a pipelined publish's own
bookkeeping on CPython. Most publish futures are resolved before anyone
looks at them, or only counted by ``flush()``, so this one makes the
Condition on first need: a wait on a pending future, a cancel,
``as_completed``. Until then it is resolved under one module-wide lock, which
is also what makes the switch from "no Condition" to "Condition" safe: the
Condition is created under that lock, so a result set before it exists is
seen by whoever creates it, and one set after goes through the Condition.
Done-callbacks added to a pending future and reading a resolved one need no
Condition either (a resolved future never changes again).

It relies on the attribute names of ``concurrent.futures._base.Future``
(``_condition``, ``_state``, ``_result``, ``_exception``, ``_waiters``,
``_done_callbacks``), unchanged from Python 3.2 to 3.13 and the same on PyPy;
``tests/unit/test_light_future.py`` runs the standard library's own
behaviours against it.
"""

from __future__ import annotations

import concurrent.futures
import threading
from concurrent.futures import _base
from typing import Any, Callable

__all__ = ["LightFuture"]

_creating = threading.Lock()


class LightFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """A future whose Condition is made on first use."""

    def __init__(self) -> None:
        # Not super().__init__(): that is what builds the Condition.
        self._cond: threading.Condition | None = None
        self._state = _base.PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        cond = self._cond
        if cond is None:
            with _creating:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    def done(self) -> bool:
        """True once the future is resolved or cancelled (no lock needed to read it)."""
        return self._state in (_base.FINISHED, _base.CANCELLED, _base.CANCELLED_AND_NOTIFIED)

    def cancelled(self) -> bool:
        """True if the future was cancelled."""
        return self._state in (_base.CANCELLED, _base.CANCELLED_AND_NOTIFIED)

    def result(self, timeout: float | None = None) -> Any:
        """The result (or raise the exception); waits up to ``timeout`` while pending."""
        if self._state == _base.FINISHED:
            # Resolved futures never change again: no Condition needed.
            if self._exception is not None:
                raise self._exception
            return self._result
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The exception (None on success); waits up to ``timeout`` while pending."""
        if self._state == _base.FINISHED:
            return self._exception
        return super().exception(timeout)

    def _run_callbacks(self) -> None:
        # As concurrent.futures does: a failing callback is logged, not raised.
        for callback in self._done_callbacks:
            try:
                callback(self)
            except Exception:
                _base.LOGGER.exception("exception calling callback for %r", self)

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        """Call ``fn(future)`` once resolved (at once if it already is)."""
        with _creating:
            if self._cond is None and self._state == _base.PENDING:
                # Kept until resolution, which calls it: no Condition needed.
                self._done_callbacks.append(fn)
                return
        super().add_done_callback(fn)

    def set_result(self, result: Any) -> None:
        """Resolve with ``result`` (InvalidStateError if already resolved)."""
        with _creating:
            if self._cond is None:
                if self._state != _base.PENDING:
                    raise _base.InvalidStateError(f"future already {self._state.lower()}")
                self._result = result
                self._state = _base.FINISHED
                callbacks = bool(self._done_callbacks)
            else:
                callbacks = None
        if callbacks is None:
            super().set_result(result)
        elif callbacks:
            self._run_callbacks()

    def set_exception(self, exception: BaseException | None) -> None:
        """Resolve with ``exception`` (InvalidStateError if already resolved)."""
        with _creating:
            if self._cond is None:
                if self._state != _base.PENDING:
                    raise _base.InvalidStateError(f"future already {self._state.lower()}")
                self._exception = exception
                self._state = _base.FINISHED
                callbacks = bool(self._done_callbacks)
            else:
                callbacks = None
        if callbacks is None:
            super().set_exception(exception)
        elif callbacks:
            self._run_callbacks()
