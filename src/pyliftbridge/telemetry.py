"""OpenTelemetry for pyliftbridge clients (the ``otel`` extra: ``opentelemetry-api``).

Pass a :class:`Telemetry` to a client to get

* a ``PRODUCER`` span per publish (``publish <stream>``), ended when its ack
  (or error) arrives, with the W3C trace context written into the message
  headers (``traceparent``, ``tracestate``) so consumers can link to it;
* a ``CONSUMER`` span per message a subscription returns (``receive
  <stream>``), linked to the producer's span found in the message headers;
* a ``CLIENT`` span per RPC (``proto.API/<Method>``);
* observable metrics mirroring ``client.stats()`` (see :meth:`Telemetry.attach`).

Attributes follow the OpenTelemetry messaging and RPC semantic conventions
(``messaging.system`` = ``liftbridge``, ``messaging.destination.name`` = the
stream, ``messaging.destination.partition.id``, ``messaging.message.body.size``,
``messaging.liftbridge.offset`` from the ack, ``error.type`` on failure).

Nothing here is imported, and nothing is paid, by a client without telemetry.
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable

from .errors import LiftbridgeError

try:
    from opentelemetry import metrics as _metrics
    from opentelemetry import propagate, trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, Span, SpanKind, StatusCode
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "pyliftbridge.telemetry needs the otel extra: pip install 'pyliftbridge[otel]'"
    ) from exc

if TYPE_CHECKING:
    from ._stats import ClientStats
    from .models import Ack, Message

__all__ = ["Telemetry"]

_SYSTEM = "liftbridge"
_SCOPE = "pyliftbridge"


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


class _HeaderGetter:
    """Reads trace context from Liftbridge message headers (bytes values)."""

    def get(self, carrier: Mapping[str, bytes], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [_text(value)]

    def keys(self, carrier: Mapping[str, bytes]) -> list[str]:
        return list(carrier)


_GETTER = _HeaderGetter()


class Telemetry:
    """OpenTelemetry tracing (and metrics) for one or more clients.

    Args:
        tracer_provider: where spans go (default: the global provider).
        meter_provider: where :meth:`observe` registers its instruments
            (default: the global provider).
        propagate: write the publishing span's context into each message's
            headers, and link receive spans to the context found there.
        receive_spans: make a span for every message a subscription returns.
        rpc_spans: make a span for every RPC (admin calls, metadata, cursors).
        metrics: report the clients' statistics as metrics (see :meth:`attach`).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: _metrics.MeterProvider | None = None,
        propagate: bool = True,
        receive_spans: bool = True,
        rpc_spans: bool = True,
        metrics: bool = True,
    ) -> None:
        from ._version import __version__

        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider)
        self._meter_provider = meter_provider
        self._version = __version__
        self.propagate = propagate
        self.receive_spans = receive_spans
        self.rpc_spans = rpc_spans
        self._metrics = metrics
        self._instruments_made = False
        self._sources: list[tuple[Callable[[], Any], dict[str, str]]] = []

    # ------------------------------------------------------------ publish

    def publish_started(
        self, stream: str, headers: Mapping[str, bytes | str] | None, size: int
    ) -> tuple[Span, Mapping[str, bytes | str] | None]:
        """Start a publish's span; return it and the headers to send (with trace context)."""
        span = self._tracer.start_span(
            f"publish {stream}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": _SYSTEM,
                "messaging.operation.name": "publish",
                "messaging.operation.type": "send",
                "messaging.destination.name": stream,
                "messaging.message.body.size": size,
            },
        )
        if not self.propagate:
            return span, headers
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        if not carrier:
            return span, headers
        merged: dict[str, bytes | str] = dict(headers or {})
        for key, value in carrier.items():
            merged[key] = value.encode()
        return span, merged

    @staticmethod
    def publish_routed(span: Span, partition: int, correlation_id: str) -> None:
        """The partition chosen and the correlation id given to a publish."""
        span.set_attribute("messaging.destination.partition.id", str(partition))
        span.set_attribute("messaging.message.conversation_id", correlation_id)

    def publish_sent(self, span: Span, future: Any) -> None:
        """End the publish's span when ``future`` (its ack) resolves."""
        future.add_done_callback(lambda done: self._publish_done(span, done))

    def _publish_done(self, span: Span, future: Any) -> None:
        if future.cancelled():
            span.set_attribute("error.type", "cancelled")
            span.end()
            return
        error = future.exception()
        if error is not None:
            self.publish_failed(span, error)
            return
        ack: Ack | None = future.result()
        if ack is not None:
            span.set_attribute("messaging.liftbridge.offset", ack.offset)
        span.end()

    @staticmethod
    def publish_failed(span: Span, error: BaseException) -> None:
        """End the publish's span with ``error``."""
        _set_error(span, error)
        span.end()

    # ------------------------------------------------------------ receive

    def context_of(self, message: Message) -> Context:
        """The trace context its producer wrote into ``message``'s headers.

        Use it as the parent (or a link) of the spans that process the message.
        """
        return propagate.extract(message.headers, getter=_GETTER)  # type: ignore[arg-type]

    def received(self, message: Message) -> None:
        """Record a ``receive`` span for one message a subscription returned."""
        links = []
        if self.propagate:
            producer = trace.get_current_span(self.context_of(message)).get_span_context()
            if producer.is_valid:
                links.append(Link(producer))
        span = self._tracer.start_span(
            f"receive {message.stream}",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": _SYSTEM,
                "messaging.operation.name": "receive",
                "messaging.operation.type": "receive",
                "messaging.destination.name": message.stream,
                "messaging.destination.partition.id": str(message.partition),
                "messaging.liftbridge.offset": message.offset,
                "messaging.message.body.size": len(message.value),
            },
        )
        span.end()

    # ---------------------------------------------------------------- RPCs

    @contextlib.contextmanager
    def rpc(self, method: str, address: str) -> Iterator[None]:
        """A span around one RPC of ``method`` to the broker at ``address``."""
        if not self.rpc_spans:
            yield
            return
        host, _, port = address.rpartition(":")
        span = self._tracer.start_span(
            f"proto.API/{method}",
            kind=SpanKind.CLIENT,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": "proto.API",
                "rpc.method": method,
                "server.address": host.strip("[]"),
                "server.port": int(port) if port.isdigit() else 0,
            },
        )
        try:
            yield
        except BaseException as exc:
            code = exc.code if isinstance(exc, LiftbridgeError) else None
            if code is not None:
                span.set_attribute("rpc.grpc.status_code", code.value)
            _set_error(span, exc)
            raise
        else:
            span.set_attribute("rpc.grpc.status_code", 0)
        finally:
            span.end()

    # ------------------------------------------------------------- metrics

    def attach(self, stats: Callable[[], ClientStats], name: str = "") -> None:
        """Report ``stats()`` (a client's ``stats``) through the metric instruments.

        A client given this Telemetry calls it itself. The instruments
        (``liftbridge.client.*``) mirror :class:`~pyliftbridge.ClientStats`
        and are created once, on the first call; ``name`` is added to every
        observation as ``liftbridge.client.name``. A client that is garbage
        collected stops being reported.
        """
        method = weakref.WeakMethod(stats) if inspect.ismethod(stats) else lambda: stats
        self._sources.append((method, {"liftbridge.client.name": name} if name else {}))
        if not self._instruments_made and self._metrics:
            self._instruments_made = True
            _make_instruments(self, _metrics.get_meter(_SCOPE, self._version, self._meter_provider))

    def _observe(self, read: _Reader) -> list[_metrics.Observation]:
        observations = []
        for method, base in list(self._sources):
            stats = method()
            if stats is None:
                continue
            for value, attributes in read(stats()):
                observations.append(_metrics.Observation(value, {**base, **attributes}))
        return observations


_Reader = Callable[["ClientStats"], Iterable[tuple[float, Mapping[str, str]]]]

_BROKER_COUNTERS = (
    ("bytes_sent", "By"),
    ("bytes_received", "By"),
    ("messages_sent", "{message}"),
    ("messages_received", "{message}"),
    ("connections_opened", "{connection}"),
    ("connections_lost", "{connection}"),
)


def _make_instruments(telemetry: Telemetry, meter: _metrics.Meter) -> None:
    def callback(read: _Reader) -> Callable[[_metrics.CallbackOptions], list[_metrics.Observation]]:
        return lambda _options: telemetry._observe(read)

    def counter(name: str, unit: str, description: str, read: _Reader) -> None:
        meter.create_observable_counter(name, [callback(read)], unit, description)

    def gauge(name: str, unit: str, description: str, read: _Reader) -> None:
        meter.create_observable_gauge(name, [callback(read)], unit, description)

    counter(
        "liftbridge.client.publishes",
        "{message}",
        "Publishes by outcome: sent, acked, failed (with error.type)",
        lambda s: [
            (s.publishes.sent, {"outcome": "sent"}),
            (s.publishes.acked, {"outcome": "acked"}),
            *(
                (n, {"outcome": "failed", "error.type": error})
                for error, n in s.publishes.failed.items()
            ),
        ],
    )
    gauge(
        "liftbridge.client.publishes.in_flight",
        "{message}",
        "Publishes waiting for their ack",
        lambda s: [(s.publishes.in_flight, {})],
    )
    gauge(
        "liftbridge.client.ack_latency.p99",
        "s",
        "99th percentile of the ack latency since the client started",
        lambda s: [(s.publishes.ack_latency.p99.total_seconds(), {})],
    )
    counter(
        "liftbridge.client.rpcs",
        "{call}",
        "RPCs by method and status",
        lambda s: [
            (n, {"rpc.method": method, "rpc.grpc.status": status})
            for method, by_status in s.rpcs.items()
            for status, n in by_status.items()
        ],
    )

    def per_broker(field: str) -> _Reader:
        return lambda s: [(getattr(b, field), {"server.address": b.address}) for b in s.brokers]

    for field, unit in _BROKER_COUNTERS:
        description = f"{field.replace('_', ' ').capitalize()}, per broker"
        counter(f"liftbridge.client.{field}", unit, description, per_broker(field))
    counter(
        "liftbridge.client.resubscribes",
        "{event}",
        "Subscriptions reopened after a connection loss or leader change",
        lambda s: [(s.resubscribes, {})],
    )
    counter(
        "liftbridge.client.metadata_refreshes",
        "{call}",
        "Metadata fetches",
        lambda s: [(s.metadata_refreshes, {})],
    )
    counter(
        "liftbridge.client.messages_consumed",
        "{message}",
        "Messages received by subscriptions",
        lambda s: [(s.messages_consumed, {})],
    )
    gauge(
        "liftbridge.client.subscriptions",
        "{subscription}",
        "Open subscriptions",
        lambda s: [(s.active_subscriptions, {})],
    )


def _set_error(span: Span, error: BaseException) -> None:
    span.set_attribute("error.type", type(error).__name__)
    span.record_exception(error)
    span.set_status(StatusCode.ERROR, str(error))
