"""The public surface: names exported, and the same methods on both clients."""

from __future__ import annotations
import __future__

import inspect
import re

import pyliftbridge
from pyliftbridge import AsyncClient, Client, LiftbridgeError


def test_all_names_exist_and_nothing_public_is_unlisted() -> None:
    for name in pyliftbridge.__all__:
        assert hasattr(pyliftbridge, name), name
    public = {
        n
        for n, v in vars(pyliftbridge).items()
        if not n.startswith("_")
        and not inspect.ismodule(v)
        and not isinstance(v, __future__._Feature)
    }
    assert public <= set(pyliftbridge.__all__), public - set(pyliftbridge.__all__)


def test_clients_have_the_same_methods_and_signatures() -> None:
    def methods(cls: type) -> dict[str, inspect.Signature]:
        return {
            n: inspect.signature(f)
            for n, f in inspect.getmembers(cls, inspect.isfunction)
            if not n.startswith("_")
        }

    def unwrapped(signature: inspect.Signature) -> str:
        # The asyncio client returns Opening[X] where the blocking one returns X.
        return re.sub(r"_opening\.Opening\[(\w+)\]", r"\1", str(signature))

    sync, asynchronous = methods(Client), methods(AsyncClient)
    assert set(sync) == set(asynchronous)
    for name, signature in sync.items():
        assert str(signature) == unwrapped(asynchronous[name]).replace(
            "AsyncSubscription", "Subscription"
        ).replace("AsyncActivityStream", "ActivityStream").replace(
            "AsyncMergedSubscription", "MergedSubscription"
        ).replace("AsyncConsumer", "Consumer"), name
    for name in ("publish", "publish_async", "subscribe", "create_stream", "fetch_cursor", "close"):
        assert name in sync
    assert inspect.iscoroutinefunction(AsyncClient.publish)
    assert not inspect.iscoroutinefunction(Client.publish)


def test_every_error_is_a_liftbridge_error() -> None:
    for name in pyliftbridge.__all__:
        value = getattr(pyliftbridge, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert issubclass(value, LiftbridgeError), name
    assert issubclass(pyliftbridge.AckTimeoutError, TimeoutError)
    assert issubclass(pyliftbridge.DeadlineExceededError, TimeoutError)
    assert issubclass(pyliftbridge.InvalidArgumentError, ValueError)


def test_public_items_have_docstrings() -> None:
    for name in pyliftbridge.__all__:
        value = getattr(pyliftbridge, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, name
    for cls in (Client, AsyncClient):
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            if not name.startswith("_"):
                assert member.__doc__, f"{cls.__name__}.{name}"
