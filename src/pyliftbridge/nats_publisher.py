"""Publish to Liftbridge streams straight through NATS (the ``nats`` extra).

Install with ``pip install pyliftbridge[nats]`` (it brings nats-py, an
asyncio NATS client). :class:`NatsPublisher` sends each message in
Liftbridge's publish envelope (:mod:`pyliftbridge.envelope`) to the stream's
NATS subject, and waits for the server's ack on an inbox of its own::

    from pyliftbridge.nats_publisher import NatsPublisher

    async with NatsPublisher.connect("nats://127.0.0.1:4222") as publisher:
        ack = await publisher.publish("orders", b"order #1", key=b"customer-7")
        print(ack.stream, ack.partition, ack.offset)

This module is never imported by ``import pyliftbridge``; only importing it
needs nats-py.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ._async._opening import Opening, opening
from .envelope import _ack_from_pb, _parse_ack, encode_message
from .errors import AckTimeoutError, InvalidArgumentError, LiftbridgeError
from .models import Ack, AckPolicy

__all__ = ["NatsPublisher", "partition_subject"]

log = logging.getLogger("pyliftbridge.nats")


def partition_subject(subject: str, partition: int = 0) -> str:
    """The NATS subject partition ``partition`` of a stream on ``subject`` listens to.

    Partition 0 listens on the stream's subject itself, partition N > 0 on
    ``<subject>.N``.
    """
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        raise InvalidArgumentError(f"partition must be an int >= 0, not {partition!r}")
    return subject if partition == 0 else f"{subject}.{partition}"


class NatsPublisher:
    """Publishes envelopes over a nats-py connection and returns typed acks.

    Args:
        connection: a connected nats-py client; it stays yours to close
            (unless the publisher came from :meth:`connect`).
        ack_timeout: default seconds to wait for an ack.
        ack_inbox: the subject acks come back on (default: a fresh inbox of
            the connection). The publisher subscribes to it on first use.

    Publishes may run concurrently (``asyncio.gather``); each waits for the
    ack with its own correlation id. When several streams share the subject,
    each sends an ack: the first one answers the publish.
    """

    def __init__(
        self,
        connection: NatsClient,
        *,
        ack_timeout: float = 5.0,
        ack_inbox: str | None = None,
    ) -> None:
        if ack_timeout <= 0:
            raise InvalidArgumentError("ack_timeout must be positive")
        self._nc = connection
        self._ack_timeout = ack_timeout
        self._inbox = ack_inbox or connection.new_inbox()
        self._subscription: Subscription | None = None
        self._pending: dict[str, asyncio.Future[Ack]] = {}
        self._owns_connection = False
        self._lock = asyncio.Lock()

    @classmethod
    def connect(
        cls, servers: str | list[str], *, ack_timeout: float = 5.0, **options: Any
    ) -> Opening[NatsPublisher]:
        """Connect to NATS (``options`` go to ``nats.connect``) and publish over it.

        Use it as ``async with NatsPublisher.connect(url) as publisher:`` or
        ``publisher = await NatsPublisher.connect(url)``; closing the
        publisher closes that connection.
        """
        return opening(cls._connect(servers, ack_timeout, options))

    @classmethod
    async def _connect(
        cls, servers: str | list[str], ack_timeout: float, options: dict[str, Any]
    ) -> NatsPublisher:
        connection = await nats.connect(servers, **options)
        publisher = cls(connection, ack_timeout=ack_timeout)
        publisher._owns_connection = True
        return publisher

    @property
    def ack_inbox(self) -> str:
        """The subject this publisher receives acks on."""
        return self._inbox

    async def _ensure_subscribed(self) -> None:
        if self._subscription is not None:
            return
        async with self._lock:
            if self._subscription is None:
                self._subscription = await self._nc.subscribe(self._inbox, cb=self._on_ack)

    async def _on_ack(self, msg: Msg) -> None:
        try:
            pb = _parse_ack(msg.data)
        except LiftbridgeError as exc:
            log.warning("ignored a malformed ack on %s: %s", msg.subject, exc)
            return
        future = self._pending.get(pb.correlationId)
        if future is None or future.done():
            # A second stream on the subject, or a publish that timed out.
            log.debug("ack for %r: no publish waits for it", pb.correlationId)
            return
        try:
            future.set_result(_ack_from_pb(pb))
        except LiftbridgeError as exc:
            future.set_exception(exc)

    async def publish(
        self,
        subject: str,
        value: bytes | str,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, bytes | str] | None = None,
        partition: int = 0,
        ack_policy: AckPolicy = AckPolicy.LEADER,
        expected_offset: int | None = None,
        correlation_id: str | None = None,
        timeout: float | None = None,
        crc: bool = False,
    ) -> Ack | None:
        """Publish to partition ``partition`` of the stream(s) on NATS ``subject``.

        Returns the :class:`~pyliftbridge.models.Ack` (None with
        ``AckPolicy.NONE``: the message is then only handed to the NATS
        client; :meth:`flush` waits until the NATS server has it).

        Raises:
            AckTimeoutError: no ack within ``timeout`` (default ``ack_timeout``):
                no stream listens on the subject, or the server was too slow.
                The message may still have been stored.
            IncorrectOffsetError, MessageTooLargeError, EncryptionError, RpcError:
                the server refused the message.
            InvalidArgumentError: an argument has the wrong type or range.
        """
        target = partition_subject(subject, partition)
        policy = AckPolicy(ack_policy)
        if policy is AckPolicy.NONE:
            data = encode_message(
                value,
                key=key,
                headers=headers,
                correlation_id=correlation_id or "",
                ack_policy=policy,
                expected_offset=expected_offset,
                crc=crc,
            )
            await self._nc.publish(target, data)
            return None
        await self._ensure_subscribed()
        cid = correlation_id or uuid.uuid4().hex
        if cid in self._pending:
            raise InvalidArgumentError(f"a publish with correlation id {cid!r} is already waiting")
        data = encode_message(
            value,
            key=key,
            headers=headers,
            ack_inbox=self._inbox,
            correlation_id=cid,
            ack_policy=policy,
            expected_offset=expected_offset,
            crc=crc,
        )
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._pending[cid] = future
        wait = self._ack_timeout if timeout is None else timeout
        try:
            await self._nc.publish(target, data)
            return await asyncio.wait_for(future, wait)
        except asyncio.TimeoutError:
            raise AckTimeoutError(
                f"no ack from Liftbridge for {target!r} within {wait:.1f}s "
                "(is a stream listening on that subject?)"
            ) from None
        finally:
            del self._pending[cid]

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until the NATS server has every message published so far."""
        await self._nc.flush(timeout)  # type: ignore[arg-type]

    async def close(self) -> None:
        """Stop receiving acks (and close the connection if :meth:`connect` made it)."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.unsubscribe()
        if self._owns_connection:
            await self._nc.close()

    async def __aenter__(self) -> NatsPublisher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
