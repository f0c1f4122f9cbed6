"""Idle subscribers hold back their own streams, not the rest of the connection."""

from __future__ import annotations

import time

import pytest

from pyliftbridge import ChannelOptions, Client, DeadlineExceededError

pytestmark = pytest.mark.integration

WINDOW = 256 * 1024


def _fill(client: Client, stream: str, partitions: int) -> None:
    value = b"v" * 16 * 1024
    for partition in range(partitions):
        for _ in range(48):  # 768 KiB per partition: three stream windows
            client.publish_async(stream, value, partition=partition)
    client.flush(timeout=30)


@pytest.mark.parametrize(
    ("connection_window", "stalls"),
    [(None, False), (2 * WINDOW, True)],
    ids=["default-connection-window", "connection-window-of-two-streams"],
)
def test_idle_subscriptions_do_not_stall_other_calls(
    liftbridge, name, connection_window, stalls
) -> None:
    with Client(liftbridge.address) as admin:
        admin.create_stream(f"{name}.subj", name, partitions=3)
        _fill(admin, name, 3)
    extra = {} if connection_window is None else {"connection_window": connection_window}
    options = ChannelOptions(stream_window=WINDOW, **extra)
    with Client(liftbridge.address, options=options, timeout=3) as client:
        if stalls:
            # The control case: with a connection window of two streams' worth,
            # idle subscribers starve the connection (here already the third
            # subscription's handshake, or the metadata call after it).
            with pytest.raises(DeadlineExceededError):
                for p in range(3):
                    client.subscribe(name, partition=p, start_at="earliest")
                time.sleep(1.0)
                client.fetch_metadata([name], timeout=3)
            return
        subscriptions = [client.subscribe(name, partition=p, start_at="earliest") for p in range(3)]
        time.sleep(1.0)  # let the server fill every stream window; read nothing
        assert name in client.fetch_metadata([name], timeout=3).streams
        ack = client.publish(name, b"still flowing", partition=0)
        assert ack is not None
        # Reading resumes the subscriptions in order, nothing lost.
        for subscription in subscriptions:
            assert [subscription.__next__().offset for _ in range(48)] == list(range(48))
            subscription.close()
