"""LightFuture behaves as concurrent.futures.Future does, whichever way it is used."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

from pyliftbridge._sync._backend import Semaphore
from pyliftbridge._sync._light_future import LightFuture


@pytest.mark.parametrize("make", [concurrent.futures.Future, LightFuture])
def test_result_exception_and_state(make: type) -> None:
    f = make()
    assert not f.done()
    f.set_result(5)
    assert f.done() and f.result() == 5 and f.exception() is None
    with pytest.raises(concurrent.futures.InvalidStateError):
        f.set_result(6)
    g = make()
    g.set_exception(ValueError("x"))
    with pytest.raises(ValueError):
        g.result()
    with pytest.raises(concurrent.futures.InvalidStateError):
        g.set_exception(ValueError("y"))


@pytest.mark.parametrize("make", [concurrent.futures.Future, LightFuture])
def test_waiters_callbacks_cancel_and_stdlib_helpers(make: type) -> None:
    f = make()
    seen = []
    f.add_done_callback(lambda fut: seen.append(fut.result()))
    threading.Timer(0.05, f.set_result, args=(1,)).start()
    assert f.result(timeout=5) == 1
    assert seen == [1]
    # A callback added after resolution runs at once.
    f.add_done_callback(lambda fut: seen.append(2))
    assert seen == [1, 2]
    c = make()
    assert c.cancel() and c.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        c.result()
    with pytest.raises(concurrent.futures.InvalidStateError):
        c.set_result(1)
    many = [make() for _ in range(5)]
    for i, fut in enumerate(many):
        threading.Timer(0.01 * i, fut.set_result, args=(i,)).start()
    assert sorted(fut.result() for fut in concurrent.futures.as_completed(many, 5)) == [
        0,
        1,
        2,
        3,
        4,
    ]
    done, _ = concurrent.futures.wait([make() for _ in range(2)] + many, timeout=0.1)
    assert set(done) == set(many)
    timed_out = make()
    with pytest.raises(concurrent.futures.TimeoutError):
        timed_out.result(timeout=0.01)
    assert "pending" in repr(timed_out)


def test_resolution_racing_the_first_waiter_is_never_lost() -> None:
    # Setters run while waiters are creating the Condition; every waiter sees its result.
    for _ in range(200):
        f = LightFuture()
        got: list[str] = []
        waiter = threading.Thread(target=lambda fut=f, out=got: out.append(fut.result(timeout=5)))
        waiter.start()
        f.set_result("ok")
        waiter.join(5)
        assert got == ["ok"]


def test_semaphore_counts_waits_and_releases_many() -> None:
    sem = Semaphore(2)
    assert sem.acquire(0) and sem.acquire(0)
    started = time.monotonic()
    assert not sem.acquire(0.05)
    assert time.monotonic() - started >= 0.04
    acquired = []
    waiters = [threading.Thread(target=lambda: acquired.append(sem.acquire(5))) for _ in range(3)]
    for t in waiters:
        t.start()
    time.sleep(0.05)
    assert acquired == []
    sem.release(3)
    for t in waiters:
        t.join(5)
    assert acquired == [True, True, True]
    assert not sem.acquire(0)


def test_correlation_ids_are_unique_across_threads_and_generators() -> None:
    from pyliftbridge._ids import CorrelationIds

    ids = CorrelationIds()
    seen: list[str] = []
    workers = [
        threading.Thread(target=lambda: seen.extend(ids.next() for _ in range(2000)))
        for _ in range(4)
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert len(set(seen)) == 8000
    assert all(i.startswith(ids.prefix) for i in seen)
    assert CorrelationIds().prefix != ids.prefix


@pytest.mark.parametrize("make", [concurrent.futures.Future, LightFuture])
def test_callbacks_added_before_resolution_run_once_in_order_and_survive_errors(
    make: type, caplog: pytest.LogCaptureFixture
) -> None:
    f = make()
    seen: list[object] = []
    f.add_done_callback(lambda fut: seen.append(("first", fut.result())))
    f.add_done_callback(lambda fut: 1 / 0)
    f.add_done_callback(lambda fut: seen.append(("third", fut.exception())))
    assert seen == []
    f.set_result(7)
    assert seen == [("first", 7), ("third", None)]
    assert "exception calling callback" in caplog.text
    g = make()
    g.add_done_callback(lambda fut: seen.append(type(fut.exception()).__name__))
    g.set_exception(KeyError("k"))
    assert seen[-1] == "KeyError"
    assert g.cancelled() is False and f.cancelled() is False


def test_light_future_stays_without_condition_for_callbacks_and_reads() -> None:
    f = LightFuture()
    f.add_done_callback(lambda fut: None)
    f.set_result(1)
    assert f.result() == 1 and f.exception() is None and not f.cancelled()
    assert f._cond is None  # the point of it: nothing waited, so no Condition was made
