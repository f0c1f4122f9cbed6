"""Consumer groups (asyncio flavour; the blocking ``Consumer`` is generated from it).

A consumer is one member of a group. The group's coordinator broker splits
the partitions of the streams the members follow among them; each member
reads only its share and the group's positions are stored as the cursor
``__group:<group id>`` of every partition.

The member's background worker asks the coordinator for its assignments
every 0.4 times the consumer timeout (that request is also the liveness
heartbeat), follows coordinator and epoch changes, reports a coordinator that
stopped answering, joins the group again when the server dropped the member
for missing heartbeats, and keeps one subscription open per assigned
partition. Messages of all those partitions come out of one bounded,
backpressured iterator; a message counts as consumed once the iterator has
returned it (at-least-once: a position is stored by :meth:`checkpoint`, by
the auto-checkpoint loop, when a partition moves to another member and on
close).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Callable

from .._groups import AUTO_OFFSETS, AutoOffset, FetchInterval, cursor_id, positive_seconds
from .._pb import api_pb2
from .._requests import map_rpc_error, subscribe_request
from .._status import StatusCode
from ..errors import (
    ClientClosedError,
    ConsumerGroupError,
    DeadlineExceededError,
    InvalidArgumentError,
    LiftbridgeError,
    NoKnownLeaderError,
    NoSuchPartitionError,
    NotLeaderError,
    UnavailableError,
)
from ..models import Message
from ._backend import Event, Lock, Mutex, Queue, Semaphore, Worker, monotonic, spawn
from ._subscription import AsyncSubscription

if TYPE_CHECKING:
    from .client import AsyncClient

__all__ = ["AsyncConsumer"]

log = logging.getLogger("pyliftbridge.consumer")

#: Errors after which the same request may succeed a little later.
_TRANSIENT = (UnavailableError, NotLeaderError, NoKnownLeaderError, DeadlineExceededError)
#: Used until the server has told the member its timeouts (server default 15 s).
_DEFAULT_TIMEOUT = 15.0
#: Queue marker: the consumer is closed, iteration ends.
_END = object()
#: Joins tried before a refusal is final (see ``_join`` for the retried ones).
_JOIN_ATTEMPTS = 3

Key = tuple[str, int]


class _Assigned:
    """One subscription of one partition assigned to this member at one epoch."""

    __slots__ = ("active", "ended", "epoch", "key", "subscription")

    def __init__(self, key: Key, epoch: int, subscription: AsyncSubscription) -> None:
        self.key = key
        self.epoch = epoch
        self.subscription = subscription
        #: False once the partition was revoked or restarted: its queued
        #: messages are dropped unread (the next owner reads them again).
        self.active = True
        #: True once the subscription stopped by itself.
        self.ended = False


class AsyncConsumer:
    """A member of a consumer group (create it with ``AsyncClient.create_consumer``).

    Call :meth:`subscribe` once with the streams to follow, then iterate::

        async with client.create_consumer("billing") as consumer:
            await consumer.subscribe(["orders", "refunds"])
            async for message in consumer:
                handle(message)

    Order holds within a partition, not across partitions. Delivery is
    at-least-once: a message returned by the iterator counts as consumed and
    its offset is stored (per partition, as cursor ``__group:<group id>``) by
    :meth:`checkpoint`, every ``auto_checkpoint``, when the partition moves to
    another member, and on :meth:`close`; messages consumed but not yet
    stored are delivered again to whoever reads the partition next.

    Errors the consumer cannot fix by itself (no stored position with
    ``auto_offset="none"``, a stream deleted, a partition paused...) are
    raised by the iterator as they happen; the consumer keeps running, so
    iteration may go on. Iteration ends when the consumer is closed.
    """

    def __init__(
        self,
        client: AsyncClient,
        group_id: str,
        *,
        consumer_id: str | None = None,
        auto_checkpoint: float | timedelta | None = timedelta(seconds=5),
        auto_offset: AutoOffset = "new",
        fetch_interval: FetchInterval = None,
        buffer: int = 1024,
    ) -> None:
        if not isinstance(group_id, str) or not group_id:
            raise InvalidArgumentError("group_id must be a non-empty str")
        if consumer_id is not None and (not isinstance(consumer_id, str) or not consumer_id):
            raise InvalidArgumentError("consumer_id must be a non-empty str")
        if auto_offset not in AUTO_OFFSETS:
            raise InvalidArgumentError(
                f"auto_offset must be one of {', '.join(map(repr, AUTO_OFFSETS))}, "
                f"got {auto_offset!r}"
            )
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise InvalidArgumentError("buffer must be an int of at least 1")
        self._client = client
        self._group_id = group_id
        self._consumer_id = consumer_id or uuid.uuid4().hex
        self._cursor_id = cursor_id(group_id)
        self._auto_checkpoint = (
            None
            if auto_checkpoint is None
            else positive_seconds(auto_checkpoint, "auto_checkpoint")
        )
        self._auto_offset = auto_offset
        self._fetch_interval: float | Callable[[float], float] | None
        if fetch_interval is None or callable(fetch_interval):
            self._fetch_interval = fetch_interval
        else:
            self._fetch_interval = positive_seconds(fetch_interval, "fetch_interval")
        self._mutex = Mutex()
        self._checkpoint_lock = Lock()
        self._queue = Queue()
        self._room = Semaphore(buffer)
        self._wakeup = Event()
        self._stopping = Event()
        self._streams: list[str] = []
        # Group membership, as last learnt from the server.
        self._coordinator = ""
        self._epoch = 0
        self._consumer_timeout = _DEFAULT_TIMEOUT
        self._coordinator_timeout = _DEFAULT_TIMEOUT
        self._last_contact = 0.0
        self._must_join = False
        self._failures = 0
        # Partitions being read, and where the application has got to.
        self._assigned: dict[Key, _Assigned] = {}
        self._positions: dict[Key, int] = {}
        self._stored: dict[Key, int] = {}
        self._failed: dict[Key, int] = {}
        self._pumps: list[Worker] = []
        self._worker: Worker | None = None
        self._checkpointer: Worker | None = None
        self._closing = False
        self._finished = False
        #: While subscribe() runs: its deadline, which bounds every step it takes.
        self._deadline: float | None = None

    # -------------------------------------------------------------- public

    @property
    def group_id(self) -> str:
        """The consumer group this member belongs to."""
        return self._group_id

    @property
    def consumer_id(self) -> str:
        """This member's id within the group."""
        return self._consumer_id

    @property
    def epoch(self) -> int:
        """The group epoch this member last learnt (it changes with every rebalance)."""
        return self._epoch

    @property
    def assignments(self) -> dict[str, list[int]]:
        """The partitions this member reads at the current epoch: stream → sorted ids."""
        with self._mutex:
            keys = sorted(
                k
                for k, a in self._assigned.items()
                if a.active and not a.ended and a.epoch == self._epoch
            )
        result: dict[str, list[int]] = {}
        for stream, partition in keys:
            result.setdefault(stream, []).append(partition)
        return result

    async def subscribe(
        self, streams: str | Iterable[str], *, timeout: float | None = None
    ) -> None:
        """Join the group for ``streams`` and start reading the partitions assigned.

        Returns once the first assignments are being read (or the first
        attempt to read them failed; the background worker keeps trying).

        Raises:
            ConsumerGroupError: already subscribed, or the server refused the join.
            InvalidArgumentError: no streams given.
            ClientClosedError: the consumer or its client is closed.
        """
        if self._closing:
            raise ClientClosedError("the consumer is closed")
        if self._streams:
            raise ConsumerGroupError("subscribe() was already called on this consumer")
        names = [streams] if isinstance(streams, str) else list(streams)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise InvalidArgumentError("streams must be one or more non-empty stream names")
        self._streams = names
        budget = self._client._timeout if timeout is None else timeout
        deadline = self._deadline = monotonic() + budget
        try:
            try:
                await self._join(budget)
            except BaseException:
                self._streams = []
                raise
            # The first round runs here, so that partitions are being read when
            # subscribe() returns (with auto_offset="new", messages published
            # after that are seen).
            delay = await self._step()
            while delay == 0 and monotonic() < deadline and not self._closing:
                delay = await self._step()
        finally:
            self._deadline = None
        self._worker = spawn(self._run, delay, name=f"pyliftbridge-group-{self._group_id}")
        if self._auto_checkpoint is not None:
            self._checkpointer = spawn(
                self._checkpoint_loop, name=f"pyliftbridge-checkpoint-{self._group_id}"
            )

    def __aiter__(self) -> AsyncConsumer:
        return self

    async def __anext__(self) -> Message:
        message = await self._next(None)
        if message is None:
            raise StopAsyncIteration
        return message

    async def get(self, timeout: float | None = None) -> Message:
        """Return the next message, waiting at most ``timeout`` seconds.

        Raises:
            TimeoutError: no message within ``timeout``.
            ClientClosedError: the consumer is closed.
            LiftbridgeError: an error reported by the consumer (see the class).
        """
        message = await self._next(timeout)
        if message is None:
            raise ClientClosedError("the consumer is closed")
        return message

    async def checkpoint(self, *, timeout: float | None = None) -> None:
        """Store the position of every partition consumed from since the last checkpoint.

        The position is the offset of the last message the iterator returned
        for that partition; a new reader of the partition starts right after it.

        Raises:
            LiftbridgeError: a position could not be stored (the others were tried).
        """
        await self._store(None, timeout)

    async def close(self) -> None:
        """Leave the group and stop; safe to call more than once.

        Stops the background work and the partition subscriptions, stores
        the final positions (a failure to store them is raised, after
        everything is stopped), and leaves the group so that its partitions
        go to the remaining members at once. Iteration ends.
        """
        if self._closing:
            return
        self._closing = True
        self._stopping.set()
        self._wakeup.set()
        for worker in (self._worker, self._checkpointer):
            if worker is not None:
                await worker.join(self._client._timeout + 1.0)
        await self._stop_all(wait=True)
        error: LiftbridgeError | None = None
        if self._streams and not self._client._closed:
            try:
                await self._store(None, None)
            except LiftbridgeError as exc:
                log.warning("group %s: final checkpoint failed: %s", self._group_id, exc)
                error = exc
            if not self._must_join:
                await self._leave()
        self._finished = True
        await self._queue.put(_END)
        if error is not None:
            raise error

    async def __aenter__(self) -> AsyncConsumer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} group={self._group_id!r} id={self._consumer_id!r} "
            f"epoch={self._epoch} partitions={len(self._assigned)}>"
        )

    # ----------------------------------------------------------- iteration

    async def _next(self, timeout: float | None) -> Message | None:
        """The next message of an active partition; None once closed."""
        if not self._streams and not self._finished:
            raise ConsumerGroupError("call subscribe() before reading messages")
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            if self._finished:
                return None
            remaining = None if deadline is None else deadline - monotonic()
            item = await self._queue.get(remaining)
            if item is _END:
                await self._queue.put(_END)  # for any other reader
                return None
            if isinstance(item, LiftbridgeError):
                raise item
            assigned: _Assigned = item[0]
            message: Message = item[1]
            self._room.release()
            with self._mutex:
                if not assigned.active:
                    continue  # revoked: the partition's next reader gets it
                self._positions[assigned.key] = message.offset
            return message

    async def _report(self, error: LiftbridgeError) -> None:
        """Hand ``error`` to the application through the iterator."""
        log.warning("group %s: %s", self._group_id, error)
        await self._queue.put(error)  # unbounded: never blocks the worker

    async def _pump(self, assigned: _Assigned) -> None:
        """Move one partition's messages into the shared queue."""
        error: LiftbridgeError | None = None
        try:
            async for message in assigned.subscription:
                await self._room.acquire()
                if not assigned.active:
                    self._room.release()
                    break
                await self._queue.put((assigned, message))
        except LiftbridgeError as exc:
            error = exc
        with self._mutex:
            assigned.ended = True
            current = assigned.active and not self._closing
        if not current:
            return
        stream, partition = assigned.key
        if error is None or isinstance(error, ConsumerGroupError):
            # The server ended it: a member with a newer epoch took the
            # partition over (that is a rebalance, not an error).
            log.debug(
                "group %s: subscription to %s/%d ended (%s)",
                self._group_id,
                stream,
                partition,
                error or "replaced by a newer member",
            )
        elif isinstance(error, ClientClosedError):
            return
        else:
            with self._mutex:
                self._failed[assigned.key] = assigned.epoch
            await self._report(error)
        self._wakeup.set()

    # ------------------------------------------------------ background work

    def _interval(self) -> float:
        interval = self._fetch_interval
        if interval is None:
            return 0.4 * self._consumer_timeout
        if callable(interval):
            return max(0.0, float(interval(self._consumer_timeout)))
        return interval

    def _backoff(self) -> float:
        """Wait after a failed round: doubles from 0.1 s, below the heartbeat period."""
        cap = min(2.0, 0.4 * self._consumer_timeout)
        return min(0.1 * float(1 << min(self._failures, 6)), max(0.1, cap))

    def _rpc_timeout(self) -> float:
        timeout = min(self._client._timeout, max(1.0, self._consumer_timeout))
        if self._deadline is not None:
            timeout = min(timeout, self._deadline - monotonic())
        return timeout

    async def _run(self, delay: float) -> None:
        """The heartbeat: fetch assignments, follow them, until closed."""
        while not self._closing:
            woken = await self._wakeup.wait(delay)
            self._wakeup.clear()
            if self._closing:
                return
            # Woken by a partition subscription that ended: let the rebalance
            # that ended it reach the coordinator first.
            if woken and await self._stopping.wait(0.05):
                return
            try:
                delay = await self._step()
            except ClientClosedError as exc:
                await self._client_gone(exc)
                return
            except Exception as exc:  # keep the heartbeat alive whatever happens
                log.exception("group %s: consumer worker error", self._group_id)
                if isinstance(exc, LiftbridgeError):
                    await self._report(exc)
                self._failures += 1
                delay = self._backoff()

    async def _checkpoint_loop(self) -> None:
        interval = self._auto_checkpoint
        assert interval is not None
        while not await self._stopping.wait(interval):
            try:
                await self._store(None, None)
            except ClientClosedError:
                return
            except LiftbridgeError as exc:
                log.warning("group %s: auto-checkpoint failed: %s", self._group_id, exc)

    async def _step(self) -> float:
        """One round: (re)join if needed, heartbeat, follow the assignments.

        Returns the seconds to wait before the next round (0: at once).
        Raises ClientClosedError only.
        """
        if self._must_join:
            try:
                await self._join(self._rpc_timeout())
            except ClientClosedError:
                raise
            except LiftbridgeError as exc:
                self._failures += 1
                if isinstance(exc, _TRANSIENT) or self._failures > 1:
                    log.info("group %s: re-join failed: %s", self._group_id, exc)
                else:
                    await self._report(exc)
                return self._backoff()
        try:
            epoch, assignments = await self._fetch_assignments()
        except ClientClosedError:
            raise
        except ConsumerGroupError as exc:
            self._failures += 1
            details = exc.details.lower()
            if exc.code is StatusCode.NOT_FOUND or "not a member" in details:
                await self._expired(exc)
                return 0.0
            if "epoch" in details:
                self._last_contact = monotonic()  # the coordinator did answer
            log.debug("group %s: assignments: %s", self._group_id, exc)
            return 0.0 if await self._check_coordinator() else self._backoff()
        except LiftbridgeError as exc:
            self._failures += 1
            log.info(
                "group %s: coordinator %s did not answer: %s",
                self._group_id,
                self._coordinator,
                exc,
            )
            return 0.0 if await self._check_coordinator() else self._backoff()
        self._failures = 0
        self._last_contact = monotonic()
        self._epoch = epoch
        retry_soon = await self._reconcile(assignments, epoch)
        return self._backoff() if retry_soon else self._interval()

    async def _join(self, timeout: float) -> None:
        client = self._client
        request = api_pb2.JoinConsumerGroupRequest(
            groupId=self._group_id, consumerId=self._consumer_id, streams=self._streams
        )
        deadline = monotonic() + timeout
        for attempt in range(_JOIN_ATTEMPTS):
            try:
                response = await client._call_any(
                    "JoinConsumerGroup",
                    request,
                    api_pb2.JoinConsumerGroupResponse,
                    deadline - monotonic(),
                )
                break
            except ConsumerGroupError as exc:
                details = exc.details.lower()
                if attempt == _JOIN_ATTEMPTS - 1:
                    raise
                if "already a member" in details:
                    # An earlier join that seemed to fail went through: leave,
                    # then join from a clean slate.
                    await self._leave(deadline - monotonic())
                elif "already exists" in details:
                    # Two members created the group at once and the other won
                    # (the server checks for the group, then creates it through
                    # Raft): the group exists now, so the next join joins it.
                    log.debug("group %s: created concurrently; joining again", self._group_id)
                elif exc.code is not StatusCode.NOT_FOUND:
                    # "does not exist" (the group vanished under the join) is
                    # retried too; anything else is a real refusal.
                    raise
        self._coordinator = response.coordinator
        self._epoch = response.epoch
        if response.consumerTimeout > 0:
            self._consumer_timeout = response.consumerTimeout / 1e9
        if response.coordinatorTimeout > 0:
            self._coordinator_timeout = response.coordinatorTimeout / 1e9
        self._last_contact = monotonic()
        self._must_join = False
        self._failures = 0
        with self._mutex:
            self._failed.clear()
        log.info(
            "group %s: member %s joined for %s (coordinator %s, epoch %d)",
            self._group_id,
            self._consumer_id,
            ", ".join(self._streams),
            self._coordinator,
            self._epoch,
        )

    async def _leave(self, timeout: float | None = None) -> None:
        request = api_pb2.LeaveConsumerGroupRequest(
            groupId=self._group_id, consumerId=self._consumer_id
        )
        try:
            await self._client._call_any(
                "LeaveConsumerGroup",
                request,
                api_pb2.LeaveConsumerGroupResponse,
                self._rpc_timeout() if timeout is None else timeout,
            )
        except ConsumerGroupError as exc:
            log.debug("group %s: leave: %s", self._group_id, exc)  # not a member any more
        except LiftbridgeError as exc:
            # The coordinator drops the member when its heartbeats stop.
            log.warning("group %s: could not leave the group: %s", self._group_id, exc)

    async def _coordinator_address(self) -> str:
        client = self._client
        for attempt in range(2):
            metadata = client._metadata
            if metadata is None or attempt > 0:
                metadata = await client._refresh_metadata(timeout=self._rpc_timeout())
            broker = metadata.broker(self._coordinator)
            if broker is not None and broker.host:
                return client._translate(broker.address)
        raise UnavailableError(
            f"coordinator {self._coordinator!r} of group {self._group_id!r} "
            "is not in the broker list"
        )

    async def _fetch_assignments(self) -> tuple[int, dict[str, list[int]]]:
        address = await self._coordinator_address()
        request = api_pb2.FetchConsumerGroupAssignmentsRequest(
            groupId=self._group_id, consumerId=self._consumer_id, epoch=self._epoch
        )
        method = "FetchConsumerGroupAssignments"
        try:
            response = await self._client._unary(
                address,
                method,
                request,
                api_pb2.FetchConsumerGroupAssignmentsResponse,
                self._rpc_timeout(),
            )
        except LiftbridgeError as exc:
            error = map_rpc_error(method, exc)
            if error is exc:
                raise
            raise error from exc
        assignments: dict[str, list[int]] = {}
        for assignment in response.assignments:
            assignments.setdefault(assignment.stream, []).extend(assignment.partitions)
        return int(response.epoch), assignments

    async def _check_coordinator(self) -> bool:
        """Look the group up; True when the coordinator or epoch changed (or it is gone).

        Reports the coordinator when it has not answered for longer than the
        coordinator timeout (a majority of members reporting it makes the
        cluster choose another).
        """
        # Naming the streams keeps the answer small (none would mean all).
        request = api_pb2.FetchMetadataRequest(streams=self._streams, groups=[self._group_id])
        try:
            response = await self._client._call_any(
                "FetchMetadata", request, api_pb2.FetchMetadataResponse, self._rpc_timeout()
            )
        except ClientClosedError:
            raise
        except LiftbridgeError as exc:
            log.debug("group %s: metadata lookup failed: %s", self._group_id, exc)
        else:
            for group in response.groupMetadata:
                if group.groupId != self._group_id:
                    continue
                if group.error == api_pb2.ConsumerGroupMetadata.UNKNOWN_GROUP:
                    await self._expired(None)
                    return True
                if group.coordinator != self._coordinator or group.epoch != self._epoch:
                    log.debug(
                        "group %s: coordinator %s epoch %d -> %s epoch %d",
                        self._group_id,
                        self._coordinator,
                        self._epoch,
                        group.coordinator,
                        group.epoch,
                    )
                    self._coordinator = group.coordinator
                    self._epoch = group.epoch
                    return True
        silent = monotonic() - self._last_contact
        if self._coordinator and silent > self._coordinator_timeout:
            log.warning(
                "group %s: coordinator %s has not answered for %.1fs; reporting it",
                self._group_id,
                self._coordinator,
                silent,
            )
            report = api_pb2.ReportConsumerGroupCoordinatorRequest(
                groupId=self._group_id,
                consumerId=self._consumer_id,
                coordinator=self._coordinator,
                epoch=self._epoch,
            )
            try:
                await self._client._call_any(
                    "ReportConsumerGroupCoordinator",
                    report,
                    api_pb2.ReportConsumerGroupCoordinatorResponse,
                    self._rpc_timeout(),
                )
            except ClientClosedError:
                raise
            except LiftbridgeError as exc:
                log.info("group %s: coordinator report failed: %s", self._group_id, exc)
        return False

    async def _expired(self, cause: LiftbridgeError | None) -> None:
        """The server dropped this member: stop reading, store positions, join again."""
        log.warning(
            "group %s: member %s is no longer in the group (%s); joining again",
            self._group_id,
            self._consumer_id,
            cause or "the group is gone",
        )
        await self._stop_all(wait=False)
        try:
            await self._store(None, self._rpc_timeout())
        except ClientClosedError:
            raise
        except LiftbridgeError as exc:
            log.warning("group %s: checkpoint failed: %s", self._group_id, exc)
        self._must_join = True

    async def _client_gone(self, error: ClientClosedError) -> None:
        """The client was closed under the consumer: stop, and tell the reader."""
        self._stopping.set()
        with self._mutex:
            assigned = list(self._assigned.values())
            self._assigned.clear()
            for a in assigned:
                a.active = False
        await self._queue.put(error)
        await self._queue.put(_END)

    # ------------------------------------------------------------ partitions

    async def _reconcile(self, assignments: Mapping[str, Sequence[int]], epoch: int) -> bool:
        """Read exactly the partitions assigned at ``epoch``; True to retry soon.

        A partition no longer assigned, or assigned at an older epoch (it may
        have been someone else's in between), is stopped; newly assigned ones
        are subscribed with this member's epoch, so that the server replaces
        (fences off) any older reader.
        """
        wanted = {(stream, p) for stream, partitions in assignments.items() for p in partitions}
        with self._mutex:
            current = list(self._assigned.values())
        revoked: list[Key] = []
        for assigned in current:
            if assigned.key in wanted and assigned.epoch == epoch and not assigned.ended:
                continue
            await self._stop(assigned)
            if assigned.key not in wanted:
                revoked.append(assigned.key)
        if revoked:
            log.info(
                "group %s: no longer reading %s",
                self._group_id,
                ", ".join(f"{s}/{p}" for s, p in sorted(revoked)),
            )
            try:
                await self._store(revoked, self._rpc_timeout())
            except ClientClosedError:
                raise
            except LiftbridgeError as exc:
                log.warning("group %s: checkpoint of revoked partitions: %s", self._group_id, exc)
        retry_soon = False
        started: list[Key] = []
        for key in sorted(wanted):
            with self._mutex:
                skip = key in self._assigned or self._failed.get(key) == epoch
            if self._closing:
                break
            if skip:
                continue
            try:
                await self._start(key, epoch)
                started.append(key)
            except ClientClosedError:
                raise
            except ConsumerGroupError as exc:
                if exc.code is None:  # our own: auto_offset="none" and no position
                    with self._mutex:
                        self._failed[key] = epoch
                    await self._report(exc)
                else:  # another member subscribed with a newer epoch
                    log.debug("group %s: %s/%d: %s", self._group_id, key[0], key[1], exc)
                    retry_soon = True
            except (*_TRANSIENT, NoSuchPartitionError) as exc:
                # The coordinator assigned the partition, so it exists: a broker
                # that restarted after a failover says otherwise until it has
                # loaded it.
                log.info("group %s: cannot read %s/%d yet: %s", self._group_id, *key, exc)
                retry_soon = True
            except LiftbridgeError as exc:
                with self._mutex:
                    self._failed[key] = epoch
                await self._report(exc)
        if started:
            log.info(
                "group %s: reading %s (epoch %d)",
                self._group_id,
                ", ".join(f"{s}/{p}" for s, p in started),
                epoch,
            )
        return retry_soon

    async def _start(self, key: Key, epoch: int) -> None:
        """Subscribe to an assigned partition after its stored (or our own) position."""
        client = self._client
        stream, partition = key
        stored = await client.fetch_cursor(
            self._cursor_id, stream, partition, timeout=self._rpc_timeout()
        )
        with self._mutex:
            last = max(stored, self._positions.get(key, -1))
        start_at: int | str
        if last >= 0:
            start_at = last + 1
        elif self._auto_offset == "none":
            raise ConsumerGroupError(
                f"group {self._group_id!r} has no stored position in {stream}/{partition} "
                "and auto_offset is 'none'"
            )
        else:
            start_at = self._auto_offset
        request = subscribe_request(
            stream,
            partition,
            start_at=start_at,
            now_ns=time.time_ns(),
            group_id=self._group_id,
            consumer_id=self._consumer_id,
            group_epoch=epoch,
        )
        subscription = AsyncSubscription(client, request, client._resubscribe_wait)
        await subscription._open(self._rpc_timeout())
        assigned = _Assigned(key, epoch, subscription)
        with self._mutex:
            closing = self._closing
            if not closing:
                self._assigned[key] = assigned
        if closing:
            await subscription.close()
            return
        with client._mutex:
            client._subscriptions.add(subscription)  # closed with the client
        self._pumps = [p for p in self._pumps if not p.done()]
        self._pumps.append(
            spawn(self._pump, assigned, name=f"pyliftbridge-group-{stream}-{partition}")
        )

    async def _stop(self, assigned: _Assigned) -> None:
        """Stop reading one partition; its queued messages are dropped."""
        with self._mutex:
            assigned.active = False
            if self._assigned.get(assigned.key) is assigned:
                del self._assigned[assigned.key]
        await assigned.subscription.close()

    async def _stop_all(self, *, wait: bool) -> None:
        """Stop every partition; with ``wait``, also wait for their readers to finish."""
        with self._mutex:
            current = list(self._assigned.values())
        for assigned in current:
            await self._stop(assigned)
        if not wait:
            return
        # Readers may wait for room in the buffer: drop the messages queued
        # (all of stopped partitions now), keep anything else for the reader.
        kept = []
        give_up = monotonic() + 5.0
        while not all(p.done() for p in self._pumps) and monotonic() < give_up:
            try:
                item = await self._queue.get(0.05)
            except TimeoutError:
                continue
            if isinstance(item, tuple):
                self._room.release()
            else:
                kept.append(item)
        for item in kept:
            await self._queue.put(item)
        self._pumps = [p for p in self._pumps if not p.done()]

    async def _store(self, keys: Iterable[Key] | None, timeout: float | None) -> None:
        """Store the positions that changed (of ``keys``, or of every partition).

        ``timeout`` bounds the whole of it (None: each store gets the client's default).
        """
        deadline = None if timeout is None else monotonic() + timeout
        async with self._checkpoint_lock:
            with self._mutex:
                wanted = self._positions.keys() if keys is None else keys
                pending = {
                    k: self._positions[k]
                    for k in wanted
                    if k in self._positions and self._stored.get(k) != self._positions[k]
                }
            first: LiftbridgeError | None = None
            for key, offset in sorted(pending.items()):
                stream, partition = key
                left = None if deadline is None else deadline - monotonic()
                try:
                    await self._client.set_cursor(
                        self._cursor_id, stream, partition, offset, timeout=left
                    )
                except LiftbridgeError as exc:
                    first = first or exc
                    continue
                with self._mutex:
                    self._stored[key] = offset
            if first is not None:
                raise first
