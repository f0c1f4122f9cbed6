"""Publishing through NATS with pyliftbridge.envelope, against the real server.

A raw NATS connection (tests/integration/_nats_wire.py) publishes envelopes on
the stream's subjects and reads the server's ack envelopes from an inbox; the
client then reads the stored messages back over gRPC.
"""

from __future__ import annotations

import uuid

import pytest
from _nats_wire import NatsWire

from pyliftbridge import AckPolicy, Client, IncorrectOffsetError
from pyliftbridge.envelope import crc32c, decode_ack, encode_message


@pytest.fixture
def nats(liftbridge):
    url = getattr(liftbridge, "nats_url", None)
    if url is None:
        pytest.skip("the server given by --liftbridge-address has no known NATS address")
    with NatsWire(url) as connection:
        yield connection


@pytest.fixture
def inbox(nats) -> str:
    subject = f"test.acks.{uuid.uuid4().hex}"
    nats.subscribe(subject)
    return subject


def _read_all(client: Client, stream: str, partition: int = 0):
    with client.subscribe(
        stream, partition=partition, start_at="earliest", stop_at="latest"
    ) as messages:
        return list(messages)


def test_envelope_publish_is_stored_and_acked(liftbridge, nats, inbox, name):
    subject = f"{name}.subj"
    with Client(liftbridge.address) as client:
        client.create_stream(subject, name, partitions=2)
        nats.publish(
            subject,
            encode_message(
                b"zero",
                key=b"k0",
                headers={"h": b"v"},
                ack_inbox=inbox,
                correlation_id="c0",
            ),
        )
        ack_subject, data = nats.next_message()
        assert ack_subject == inbox
        ack = decode_ack(data)
        assert (ack.stream, ack.partition, ack.offset) == (name, 0, 0)
        assert (ack.correlation_id, ack.ack_inbox) == ("c0", inbox)
        assert ack.partition_subject == subject

        nats.publish(
            f"{subject}.1",
            encode_message(b"one", ack_inbox=inbox, correlation_id="c1", crc=True),
        )
        ack = decode_ack(nats.next_message()[1])
        assert (ack.partition, ack.offset, ack.correlation_id) == (1, 0, "c1")
        assert (ack.partition_subject, ack.message_subject) == (subject, f"{subject}.1")

        [zero] = _read_all(client, name, 0)
        assert (zero.key, zero.value) == (b"k0", b"zero")
        assert zero.headers["h"] == b"v"
        assert zero.headers["subject"] == subject.encode()
        [one] = _read_all(client, name, 1)
        assert one.value == b"one"


def test_no_ack_with_ack_policy_none(liftbridge, nats, inbox, name):
    subject = f"{name}.subj"
    with Client(liftbridge.address) as client:
        client.create_stream(subject, name)
        quiet = encode_message(b"a", ack_inbox=inbox, correlation_id="a", ack_policy=AckPolicy.NONE)
        nats.publish(subject, quiet)
        nats.publish(subject, encode_message(b"b", ack_inbox=inbox, correlation_id="b"))
        # The first ack on the inbox is the second message's: none came for the first.
        ack = decode_ack(nats.next_message()[1])
        assert (ack.correlation_id, ack.offset) == ("b", 1)
        assert [m.value for m in _read_all(client, name)] == [b"a", b"b"]


def test_a_bad_crc_is_stored_as_a_plain_message(liftbridge, nats, inbox, name):
    subject = f"{name}.subj"
    with Client(liftbridge.address) as client:
        client.create_stream(subject, name)
        good = encode_message(b"payload", ack_inbox=inbox, crc=True)
        assert int.from_bytes(good[8:12], "big") == crc32c(good[12:])
        broken = good[:8] + bytes(4) + good[12:]
        nats.publish(subject, broken)
        nats.publish(subject, encode_message(b"after", ack_inbox=inbox, correlation_id="after"))
        # The broken envelope is not read as one: no ack, and its raw bytes are the value.
        ack = decode_ack(nats.next_message()[1])
        assert (ack.correlation_id, ack.offset) == ("after", 1)
        stored = _read_all(client, name)
        assert [m.value for m in stored] == [broken, b"after"]


def test_expected_offset_through_nats(liftbridge, nats, inbox, name):
    subject = f"{name}.subj"
    with Client(liftbridge.address) as client:
        client.create_stream(subject, name, optimistic_concurrency_control=True)
        nats.publish(subject, encode_message(b"first", ack_inbox=inbox, expected_offset=0))
        assert decode_ack(nats.next_message()[1]).offset == 0
        nats.publish(subject, encode_message(b"stale", ack_inbox=inbox, expected_offset=0))
        with pytest.raises(IncorrectOffsetError):
            decode_ack(nats.next_message()[1])
        nats.publish(subject, encode_message(b"second", ack_inbox=inbox, expected_offset=1))
        assert decode_ack(nats.next_message()[1]).offset == 1
        assert [m.value for m in _read_all(client, name)] == [b"first", b"second"]
