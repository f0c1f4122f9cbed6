"""Results that may be awaited or used directly in ``async with`` (asyncio only).

``AsyncClient.subscribe`` and friends return an :class:`Opening`, so both
spellings work, as with httpx and aiokafka::

    async with client.subscribe("orders") as messages: ...
    messages = await client.subscribe("orders")        # then close it yourself

The blocking client returns the object itself; its ``_sync/_opening.py``
twin is written by hand, not generated, because it has nothing to wait for.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Opening", "opening"]


class _AsyncResource(Protocol):
    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...


_T = TypeVar("_T", bound=_AsyncResource)


class Opening(Generic[_T]):
    """A resource being opened: ``await`` it, or enter it with ``async with``.

    ``await opening`` returns the resource (closing it is then up to you);
    ``async with opening as resource`` opens it, and closes it when the block
    ends. Either may be used once.
    """

    __slots__ = ("_coro", "_resource")

    def __init__(self, coro: Coroutine[Any, Any, _T]) -> None:
        self._coro = coro
        self._resource: _T | None = None

    def __await__(self) -> Generator[Any, None, _T]:
        return self._coro.__await__()

    async def __aenter__(self) -> _T:
        resource = await self._coro
        self._resource = resource
        entered: _T = await resource.__aenter__()
        return entered

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        resource, self._resource = self._resource, None
        if resource is not None:
            await resource.__aexit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<Opening {self._coro!r}>"


def opening(coro: Coroutine[Any, Any, _T]) -> Opening[_T]:
    """Wrap the coroutine that opens a resource (see :class:`Opening`)."""
    return Opening(coro)
