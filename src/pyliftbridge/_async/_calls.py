"""How the client reaches the cluster (asyncio flavour; the blocking twin is generated).

One channel per broker, the cached metadata, and the calls themselves:
``_call_any`` (any broker, retried elsewhere until the deadline) and
``_call_leader`` (the partition leader, following leadership changes). The
client's public methods are built on these; its state is set up by
:class:`~pyliftbridge._async.client.AsyncClient`'s constructor.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypeVar, Union

from google.protobuf.message import Message as _PbMessage

from .._decode import parse
from .._options import ChannelOptions, TLSConfig
from .._pb import api_pb2
from .._requests import map_rpc_error
from ..errors import (
    ClientClosedError,
    DeadlineExceededError,
    LiftbridgeError,
    NoSuchPartitionError,
    NotLeaderError,
    UnavailableError,
)
from ..models import Metadata, PartitionInfo
from ._backend import Mutex, monotonic, sleep
from .channel import AsyncChannel

if TYPE_CHECKING:
    from ..telemetry import Telemetry

__all__ = ["AsyncCalls"]

log = logging.getLogger("pyliftbridge.client")

_R = TypeVar("_R", bound=_PbMessage)

AddressMap = Union[Mapping[str, str], Callable[[str], str], None]

_RETRYABLE = (UnavailableError, NotLeaderError)
#: Calls whose deadline is kept from the server: Liftbridge v1.9.0 answers
#: FetchMetadata only once every broker it knows has answered, or at the
#: caller's deadline with DEADLINE_EXCEEDED, so with a broker down a deadline
#: turns a 3 s wait into a failure. The deadline is still enforced locally.
_LOCAL_DEADLINE_ONLY = frozenset({"FetchMetadata"})
#: Calls that change nothing on the server, so a slow attempt may be abandoned and retried.
_IDEMPOTENT = frozenset({"FetchMetadata"})


class AsyncCalls:
    """Channels, metadata and routed, retried calls: the base of the client."""

    # Set by the client's constructor.
    _seeds: list[str]
    _timeout: float
    _tls: TLSConfig | None
    _address_map: AddressMap
    _options: ChannelOptions
    _mutex: Mutex
    _channels: dict[str, AsyncChannel]
    _metadata: Metadata | None
    _closed: bool
    _telemetry: Telemetry | None
    _rpc_counts: dict[tuple[str, str], int]
    _metadata_refreshes: int
    _metadata_refresh_failures: int

    def _check_open(self) -> None:
        """Raise ClientClosedError once closed (the client also starts its workers here)."""
        if self._closed:
            raise ClientClosedError("the client is closed")

    def _translate(self, address: str) -> str:
        mapping = self._address_map
        if mapping is None:
            return address
        if callable(mapping):
            return mapping(address)
        return mapping.get(address, address)

    def _channel(self, address: str) -> AsyncChannel:
        with self._mutex:
            if self._closed:
                raise ClientClosedError("the client is closed")
            channel = self._channels.get(address)
            if channel is None:
                channel = AsyncChannel(address, tls=self._tls, options=self._options)
                self._channels[address] = channel
            return channel

    def _broker_addresses(self) -> list[str]:
        """Known brokers first (in random order, to spread load), then the seeds."""
        known = []
        metadata = self._metadata
        if metadata is not None:
            known = [self._translate(b.address) for b in metadata.brokers]
            random.shuffle(known)
        seeds = [s for s in self._seeds if s not in known]
        return known + seeds

    async def _unary(
        self,
        address: str,
        method: str,
        request: _PbMessage,
        response_type: type[_R],
        timeout: float,
    ) -> _R:
        telemetry = self._telemetry
        try:
            with nullcontext() if telemetry is None else telemetry.rpc(method, address):
                data = await self._channel(address).unary(
                    f"/proto.API/{method}",
                    request.SerializeToString(),
                    timeout=timeout,
                    send_deadline=method not in _LOCAL_DEADLINE_ONLY,
                )
        except LiftbridgeError as exc:
            self._count_rpc(method, exc)
            raise
        self._count_rpc(method, None)
        return parse(response_type, data)

    async def _call_any(
        self,
        method: str,
        request: _PbMessage,
        response_type: type[_R],
        timeout: float | None = None,
    ) -> _R:
        """Call ``method`` on any broker, retrying retryable failures until the deadline.

        Read-only calls give each broker a share of the time: a broker that
        hangs (paused, or waiting on a cluster that lost members) must not use
        up the whole deadline while another could answer at once.
        """
        self._check_open()
        budget = self._timeout if timeout is None else timeout
        deadline = monotonic() + budget
        idempotent = method in _IDEMPOTENT
        attempt = 0
        last: LiftbridgeError | None = None
        while True:
            for address in self._broker_addresses():
                remaining = deadline - monotonic()
                if remaining <= 0:
                    break
                # 4 s: the server's own 3 s wait for unreachable peers, plus margin.
                share = min(remaining, max(4.0, budget / 3)) if idempotent else remaining
                try:
                    return await self._unary(address, method, request, response_type, share)
                except LiftbridgeError as exc:
                    error = map_rpc_error(method, exc)
                    retry = error.retryable or (
                        idempotent and isinstance(error, DeadlineExceededError)
                    )
                    if not retry or self._closed:
                        if error is exc:
                            raise
                        raise error from exc
                    last = error
                    log.debug("%s on %s failed (%s); retrying elsewhere", method, address, error)
            remaining = deadline - monotonic()
            if remaining <= 0:
                break
            attempt += 1
            await sleep(min(0.05 * 2**attempt, 1.0, remaining))
        if last is None:
            raise DeadlineExceededError(f"{method} did not complete within {budget:.1f}s")
        raise last

    async def _partition_address(
        self,
        stream: str,
        partition: int,
        *,
        isr: bool = False,
        refresh: bool = False,
        timeout: float | None = None,
    ) -> str:
        """Address of the partition's leader (or a random in-sync replica).

        ``timeout`` bounds the metadata refresh this may need (what is left
        of the caller's deadline; None: the client's default).
        """
        info = await self._partition_info(stream, partition, refresh=refresh, timeout=timeout)
        return self._address_of(info, isr=isr)

    def _address_of(self, info: PartitionInfo, *, isr: bool = False) -> str:
        stream, partition = info.stream, info.id
        if isr:
            candidates = [b for b in info.isr if b.host]
            if not candidates:
                raise UnavailableError(
                    f"partition {stream}/{partition} has no reachable in-sync replica"
                )
            return self._translate(random.choice(candidates).address)
        if info.leader is None or not info.leader.host:
            raise UnavailableError(f"partition {stream}/{partition} has no known leader")
        return self._translate(info.leader.address)

    async def _partition_info(
        self, stream: str, partition: int, *, refresh: bool, timeout: float | None = None
    ) -> PartitionInfo:
        metadata = self._metadata
        if refresh or metadata is None or stream not in metadata.streams:
            metadata = await self._refresh_metadata(timeout=timeout)
        info = metadata.stream(stream)
        if partition not in info.partitions:
            raise NoSuchPartitionError(f"stream {stream!r} has no partition {partition}")
        return info.partitions[partition]

    async def _call_leader(
        self,
        stream: str,
        partition: int,
        method: str,
        request: _PbMessage,
        response_type: type[_R],
        timeout: float | None = None,
        *,
        paused: Callable[[PartitionInfo], _R] | None = None,
    ) -> _R:
        """Call ``method`` on the partition leader, following leadership changes.

        Every step (metadata refreshes included) shares the call's deadline.
        With ``paused``, a partition that fresh metadata shows paused is
        answered by ``paused(info)``: a paused partition has no leader that
        could answer, and waiting for one would only use up the deadline.
        """
        self._check_open()
        budget = self._timeout if timeout is None else timeout
        deadline = monotonic() + budget
        attempt = 0
        address = "(leader unknown)"
        while True:
            remaining = deadline - monotonic()
            try:
                if remaining <= 0:
                    raise DeadlineExceededError(f"{method} did not complete within {budget:.1f}s")
                info = await self._partition_info(
                    stream, partition, refresh=attempt > 0, timeout=remaining
                )
                if paused is not None and attempt > 0 and info.paused:
                    return paused(info)
                address = self._address_of(info)
                remaining = deadline - monotonic()
                return await self._unary(address, method, request, response_type, remaining)
            except LiftbridgeError as exc:
                error = map_rpc_error(method, exc)
                attempt += 1
                if isinstance(error, _RETRYABLE) and not self._closed and monotonic() < deadline:
                    log.debug(
                        "%s on %s (for %s/%d) failed (%s); retrying",
                        method,
                        address,
                        stream,
                        partition,
                        error,
                    )
                    await sleep(min(0.05 * attempt, max(0.0, deadline - monotonic())))
                    continue
                if error is exc:
                    raise
                raise error from exc

    async def _refresh_metadata(
        self, streams: Sequence[str] = (), timeout: float | None = None
    ) -> Metadata:
        """Fetch metadata (all streams, or ``streams``), update the cache, return the answer."""
        request = api_pb2.FetchMetadataRequest(streams=list(streams))
        try:
            response = await self._call_any(
                "FetchMetadata", request, api_pb2.FetchMetadataResponse, timeout
            )
        except LiftbridgeError:
            with self._mutex:
                self._metadata_refresh_failures += 1
            raise
        fresh = Metadata.from_proto(response, datetime.now(timezone.utc))
        with self._mutex:
            self._metadata_refreshes += 1
            if streams and self._metadata is not None:
                self._metadata = self._metadata.merged(fresh)
            else:
                self._metadata = fresh
        return fresh

    def _count_rpc(self, method: str, error: LiftbridgeError | None) -> None:
        """Count one call of ``method`` that ended OK (``error`` None) or failed."""
        if error is None:
            status = "OK"
        else:
            code = error.code
            status = type(error).__name__ if code is None else code.name
        key = (method, status)
        with self._mutex:
            self._rpc_counts[key] = self._rpc_counts.get(key, 0) + 1
