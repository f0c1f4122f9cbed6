"""pyliftbridge.compat: python-liftbridge 0.0.7's API, against a real server.

The first test runs the examples of python-liftbridge 0.0.7's README (its
"Basic Usage", "Create Stream", "Subscription Start/Replay Options" and
"Publishing" sections, Apache-2.0, quoted below exactly) with only their
import line changed. They dial ``localhost:9292``, so a forwarder on that
port relays to a server of this test's own.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from _forward import Forwarder

from pyliftbridge import (
    Ack,
    AckPolicy,
    Client,
    ClientClosedError,
    DeadlineExceededError,
    InvalidArgumentError,
    LiftbridgeError,
    NoSuchStreamError,
    StreamExistsError,
    UnavailableError,
)
from pyliftbridge.compat import (
    ErrChannelClosed,
    ErrDeadlineExceeded,
    ErrNoSuchStream,
    ErrStreamExists,
    Lift,
    Message,
    StartPosition,
    Stream,
)

pytestmark = pytest.mark.integration

SEED_IMPORT = "from python_liftbridge import Lift, Message, Stream, ErrStreamExists\n"

SEED_BASIC_USAGE = """\
from python_liftbridge import Lift, Message, Stream, ErrStreamExists

# Create a Liftbridge client.
client = Lift(ip_address='localhost:9292', timeout=5)

# Create a Liftbridge stream with name "foo-stream"
try:
    client.create_stream(Stream(subject='foo', name='foo-stream'))
except ErrStreamExists:
    print('This stream already exists!')

# Publish a message to the stream with the name "foo-stream".
client.publish(Message(value='hello', stream='foo-stream'))

# Subscribe to the stream starting from the beginning.
for message in client.subscribe(
    Stream(
        subject='foo',
        name='foo-stream',
    ).start_at_earliest_received(),
):
    print("Received: '{}'".format(message.value))
"""

SEED_CREATE_STREAM = '''\
"""
    Create a stream attached to the NATS subject "foo.*" that is replicated to
    all the brokers in the cluster. ErrStreamExists is returned if a stream with
    the given name already exists for the subject.
"""
client.create_stream(Stream(subject='foo.*', name='my-stream', max_replication=True))
'''

SEED_START_OPTIONS = """\
# Subscribe starting with new messages only.
client.subscribe(
    Stream(subject='foo', name='foo-stream')
)
# Subscribe starting with the most recently published value.
client.subscribe(
    Stream(subject='foo', name='foo-stream').start_at_earliest_received()
)
# Subscribe starting with the oldest published value.
client.subscribe(
    Stream(subject='foo', name='foo-stream').start_at_latest_received()
)
# Subscribe starting at a specific offset.
client.subscribe(
    Stream(subject='foo', name='foo-stream').start_at_offset(4)
)
# Subscribe starting at a specific time.
client.subscribe(
    Stream(subject='foo', name='foo-stream').start_at_time(datetime.now())
)
# Subscribe starting at a specific amount of time in the past.
client.subscribe(
    Stream(subject='foo', name='foo-stream').start_at_time_delta(timedelta(days=1))
)
"""

SEED_PUBLISH_KEY = """\
# Publish a message with a key
client.publish(Message(stream='foo-stream', value='Hello', key='key'))
"""

SEED_PUBLISH_SUBJECT = """\
# Publish a message to the NATS subject
client.publish_to_subject(Message(subject='foo', value='Hello foo'))
"""

OUR_IMPORT = "from pyliftbridge.compat import Lift, Message, Stream, ErrStreamExists\n"


def _wait_for(lines, count, timeout=15.0):
    deadline = time.monotonic() + timeout
    while len(lines) < count:
        assert time.monotonic() < deadline, f"printed so far: {lines}"
        time.sleep(0.02)


class _Example:
    """Runs README blocks in one namespace whose ``print`` records lines."""

    def __init__(self):
        self.lines = []
        # The README's subscription block uses datetime and timedelta without
        # importing them; its reader is assumed to have done so.
        self.namespace = {
            "print": lambda *args: self.lines.append(" ".join(map(str, args))),
            "datetime": datetime,
            "timedelta": timedelta,
        }
        self.errors = []

    def run(self, code):
        exec(compile(code, "<python-liftbridge README>", "exec"), self.namespace)

    def start(self, code):
        def target():
            try:
                self.run(code)
            except BaseException as exc:
                self.errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread


@pytest.fixture
def seed_address(fresh_liftbridge):
    host, port = fresh_liftbridge.address.rsplit(":", 1)
    # Another test run (scripts/test.sh runs two interpreters at once) may hold
    # the port for a few seconds.
    deadline = time.monotonic() + 60
    while True:
        try:
            forwarder = Forwarder(("127.0.0.1", 9292), (host, int(port)))
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                pytest.skip(f"the README's address localhost:9292 stayed taken ({exc})")
            time.sleep(0.2)
    with forwarder:
        yield fresh_liftbridge.address


def test_seed_readme_runs_with_only_its_import_changed(seed_address):
    assert SEED_BASIC_USAGE.startswith(SEED_IMPORT)
    basic_usage = OUR_IMPORT + SEED_BASIC_USAGE[len(SEED_IMPORT) :]

    first = _Example()
    loop = first.start(basic_usage)
    _wait_for(first.lines, 1)
    # The loop follows the stream; the other sections run meanwhile on its client.
    first.run(SEED_CREATE_STREAM)
    first.run(SEED_START_OPTIONS)
    first.run(SEED_PUBLISH_KEY)
    first.run(SEED_PUBLISH_SUBJECT)
    _wait_for(first.lines, 3)
    first.namespace["client"].close()  # ends the subscription loop
    loop.join(10)
    assert not loop.is_alive() and first.errors == []
    # Earliest means the oldest message; values come back as bytes, as in 0.0.7.
    assert first.lines == [
        "Received: 'b'hello''",
        "Received: 'b'Hello''",
        "Received: 'b'Hello foo''",
    ]

    # Again: the stream exists now, and the subscription replays all three.
    second = _Example()
    loop = second.start(basic_usage)
    _wait_for(second.lines, 5)
    second.namespace["client"].close()
    loop.join(10)
    assert second.errors == []
    assert second.lines == [
        "This stream already exists!",
        "Received: 'b'hello''",
        "Received: 'b'Hello''",
        "Received: 'b'Hello foo''",
        "Received: 'b'hello''",
    ]

    with Client(seed_address) as client:
        metadata = client.fetch_metadata()
        assert metadata.stream("my-stream").subject == "foo.*"
        with client.subscribe("foo-stream", start_at="earliest", stop_at="latest") as sub:
            messages = list(sub)
        assert [(m.key, m.value) for m in messages] == [
            (None, b"hello"),
            (b"key", b"Hello"),
            (None, b"Hello foo"),
            (None, b"hello"),
        ]


def test_error_names_are_our_classes():
    assert ErrStreamExists is StreamExistsError
    assert ErrNoSuchStream is NoSuchStreamError
    assert ErrChannelClosed is ClientClosedError
    assert ErrDeadlineExceeded is DeadlineExceededError
    with pytest.raises(ValueError, match="Either stream or subject"):
        Message(value="no destination")


def _first(client, stream, timeout=10.0):
    messages = client.subscribe(stream, timeout=timeout)
    try:
        return next(messages)
    finally:
        messages.close()


def test_start_positions_mean_what_they_say(liftbridge, name):
    with Lift(liftbridge.address) as lift:
        lift.create_stream(Stream(f"{name}.subj", name))
        before = datetime.now()
        for i in range(5):
            lift.publish(Message(b"%d" % i, stream=name))
        stream = Stream(f"{name}.subj", name)
        assert stream.start_position is StartPosition.NEW_ONLY
        assert _first(lift, stream.start_at_earliest_received()).offset == 0
        assert _first(lift, stream.start_at_latest_received()).offset == 4
        assert _first(lift, stream.start_at_offset(3)).offset == 3
        assert _first(lift, stream.start_at_time(before)).offset == 0
        aware_future = datetime.now(timezone.utc) + timedelta(hours=1)
        assert stream.start_at_time(aware_future).start_position is StartPosition.TIMESTAMP
        assert list(lift.subscribe(stream, timeout=0.5)) == []
        assert _first(lift, stream.start_at_time_delta(timedelta(days=1))).offset == 0
        # New-only: nothing old, then the next message published.
        # New-only: nothing old, only what is published once it runs (the
        # generator subscribes at its first next(), so keep publishing).
        new_only = lift.subscribe(Stream(f"{name}.subj", name), timeout=20)
        stop = threading.Event()

        def publish_until_stopped():
            while not stop.wait(0.2):
                lift.publish(Message(b"new", stream=name))

        publisher = threading.Thread(target=publish_until_stopped)
        publisher.start()
        try:
            first_new = next(new_only)
            assert first_new.offset >= 5 and first_new.value == b"new"
        finally:
            stop.set()
            publisher.join(10)  # its last ack, before the client closes
            new_only.close()


def test_publish_waits_for_its_ack_and_messages_say_where_they_came_from(liftbridge, name):
    with Lift(liftbridge.address) as lift:
        lift.create_stream(Stream(f"{name}.subj", name, partitions=2))
        ack = lift.publish(
            Message(
                "héllo", stream=name, key=b"k", headers={"h": "v"}, correlation_id="c1"
            ).ack_policy_all()
        )
        assert isinstance(ack, Ack)
        assert (ack.stream, ack.partition, ack.offset, ack.ack_policy) == (
            name,
            0,
            0,
            AckPolicy.ALL,
        )
        assert ack.correlation_id == "c1"
        assert lift.publish(Message(b"quiet", stream=name).ack_policy_none()) is None
        sub_ack = lift.publish_to_subject(Message(b"one", subject=f"{name}.subj", partition=1))
        assert (sub_ack.stream, sub_ack.partition, sub_ack.offset) == (name, 1, 0)

        first = _first(lift, Stream(f"{name}.subj", name).start_at_earliest_received())
        assert (first.stream, first.subject, first.partition) == (name, f"{name}.subj", 0)
        assert (first.value, first.key, first.offset) == ("héllo".encode(), b"k", 0)
        assert first.headers["h"] == b"v"
        assert first.timestamp > 0
        other = Stream(f"{name}.subj", name, subscribe_to_partition=1).start_at_offset(0)
        one = _first(lift, other)
        assert (one.partition, one.subject, one.value) == (1, f"{name}.subj.1", b"one")

        with pytest.raises(InvalidArgumentError, match="ack_inbox"):
            lift.publish(Message(b"x", stream=name, ack_inbox="acks"))
        with pytest.raises(InvalidArgumentError, match="stream"):
            lift.publish(Message(b"x", subject="s"))
        assert lift.fetch_metadata().stream(name).partitions.keys() == {0, 1}

        lift.delete_stream(Stream(f"{name}.subj", name))
        with pytest.raises(ErrNoSuchStream):
            lift.delete_stream(name)
        with pytest.raises(ErrNoSuchStream):
            next(lift.subscribe(Stream(f"{name}.subj", name)))


def test_unreachable_server_raises_a_typed_error_not_system_exit():
    started = time.monotonic()
    with pytest.raises(LiftbridgeError) as info:
        Lift("127.0.0.1:1", timeout=1)
    assert isinstance(info.value, (UnavailableError, DeadlineExceededError))
    assert time.monotonic() - started < 5
