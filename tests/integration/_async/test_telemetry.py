"""OpenTelemetry spans and metrics against a real Liftbridge server (SDK in-memory exporters).

This file is the source of ``tests/integration/_sync/test_telemetry.py``
(``scripts/unasync.py``): every test here runs against both clients.
"""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (the test extra)")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from pyliftbridge import AsyncClient, NoSuchStreamError, RoundRobinPartitioner
from pyliftbridge._async._backend import wait_future
from pyliftbridge.telemetry import Telemetry

pytestmark = pytest.mark.integration


def tracing():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider


async def test_publish_and_receive_spans_are_linked(liftbridge, name):
    exporter, provider = tracing()
    reader = InMemoryMetricReader()
    telemetry = Telemetry(
        tracer_provider=provider, meter_provider=MeterProvider(metric_readers=[reader])
    )
    async with AsyncClient(liftbridge.address, telemetry=telemetry) as client:
        await client.create_stream(f"{name}.subj", name, partitions=2)
        sub = await client.subscribe(name, partition=1, start_at="earliest")
        ack = await client.publish(name, b"hello", partition=1, headers={"app": b"kept"})
        future = await client.publish_async(name, b"second", partition=1)
        second = await wait_future(future, 5)
        message = await sub.__anext__()
        await sub.__anext__()
        with pytest.raises(NoSuchStreamError):
            await client.publish(f"{name}-none", b"x", partitioner=RoundRobinPartitioner())
        await sub.close()

    spans = exporter.get_finished_spans()
    publishes = [s for s in spans if s.name == f"publish {name}"]
    assert len(publishes) == 2
    published = publishes[0]
    assert published.kind is SpanKind.PRODUCER
    assert dict(published.attributes) == {
        "messaging.system": "liftbridge",
        "messaging.operation.name": "publish",
        "messaging.operation.type": "send",
        "messaging.destination.name": name,
        "messaging.destination.partition.id": "1",
        "messaging.message.body.size": 5,
        "messaging.message.conversation_id": ack.correlation_id,
        "messaging.liftbridge.offset": ack.offset,
    }
    assert publishes[1].attributes["messaging.liftbridge.offset"] == second.offset
    assert published.status.status_code is StatusCode.UNSET

    # The trace context travelled in the headers, next to the caller's own.
    assert message.headers["app"] == b"kept"
    context = published.context
    assert (
        message.headers["traceparent"]
        .decode()
        .startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    )
    assert telemetry.context_of(message) is not None

    receives = [s for s in spans if s.name == f"receive {name}"]
    assert len(receives) == 2
    received = receives[0]
    assert received.kind is SpanKind.CONSUMER
    assert received.attributes["messaging.liftbridge.offset"] == ack.offset
    assert received.attributes["messaging.destination.partition.id"] == "1"
    assert received.attributes["messaging.message.body.size"] == 5
    (link,) = received.links
    assert (link.context.trace_id, link.context.span_id) == (context.trace_id, context.span_id)
    assert receives[1].links[0].context.span_id == publishes[1].context.span_id

    failed = [s for s in spans if s.name == f"publish {name}-none"]
    assert len(failed) == 1
    assert failed[0].status.status_code is StatusCode.ERROR
    assert failed[0].attributes["error.type"] == "NoSuchStreamError"

    create = [s for s in spans if s.name == "proto.API/CreateStream"]
    assert len(create) == 1
    assert create[0].kind is SpanKind.CLIENT
    assert create[0].attributes["rpc.method"] == "CreateStream"
    assert create[0].attributes["rpc.grpc.status_code"] == 0
    assert create[0].attributes["server.port"] == int(liftbridge.address.rsplit(":", 1)[1])
    assert any(s.name == "proto.API/FetchMetadata" for s in spans)

    points = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, tuple(sorted(point.attributes.items())))
                    points[key] = point.value
    assert points[("liftbridge.client.publishes", (("outcome", "acked"),))] == 2
    failed_key = (("error.type", "NoSuchStreamError"), ("outcome", "failed"))
    assert points[("liftbridge.client.publishes", failed_key)] == 1
    assert points[("liftbridge.client.messages_consumed", ())] == 2


async def test_without_propagation_headers_stay_as_given(liftbridge, name):
    exporter, provider = tracing()
    telemetry = Telemetry(tracer_provider=provider, propagate=False, metrics=False)
    async with AsyncClient(liftbridge.address, telemetry=telemetry) as client:
        await client.create_stream(f"{name}.subj", name)
        sub = await client.subscribe(name, start_at="earliest")
        await client.publish(name, b"plain")
        message = await sub.__anext__()
        await sub.close()
    assert "traceparent" not in message.headers
    receive = [s for s in exporter.get_finished_spans() if s.name == f"receive {name}"]
    assert len(receive) == 1
    assert not receive[0].links
