"""The keepalive policy: when to ping, when a silent connection is dead."""

from __future__ import annotations

import pytest

from pyliftbridge._core.keepalive import KeepaliveAction, KeepalivePolicy
from pyliftbridge.errors import InvalidArgumentError


def test_disabled_by_default_never_pings() -> None:
    policy = KeepalivePolicy(None)
    policy.start(0.0)
    assert not policy.enabled
    assert policy.poll(10_000.0, active_calls=3) is KeepaliveAction.NOTHING
    assert policy.seconds_until_due(10_000.0) is None


def test_interval_is_never_below_the_server_enforcement() -> None:
    policy = KeepalivePolicy(10.0)
    assert policy.interval == 300.0
    assert KeepalivePolicy(10.0, min_interval=10.0).interval == 10.0


def test_pings_after_read_silence_only_with_active_calls() -> None:
    policy = KeepalivePolicy(300.0)
    policy.start(0.0)
    assert policy.poll(299.0, active_calls=1) is KeepaliveAction.NOTHING
    assert policy.poll(301.0, active_calls=0) is KeepaliveAction.NOTHING
    assert policy.poll(301.0, active_calls=1) is KeepaliveAction.SEND_PING
    # While the ping is out, nothing more is sent...
    assert policy.poll(302.0, active_calls=1) is KeepaliveAction.NOTHING
    # ...and reading anything (the ack included) counts as life.
    policy.data_received(305.0)
    assert policy.poll(306.0, active_calls=1) is KeepaliveAction.NOTHING
    assert policy.seconds_until_due(306.0) == pytest.approx(299.0)


def test_silence_is_measured_from_the_last_read() -> None:
    policy = KeepalivePolicy(300.0)
    policy.start(0.0)
    policy.data_received(250.0)
    assert policy.poll(400.0, active_calls=1) is KeepaliveAction.NOTHING
    assert policy.poll(551.0, active_calls=1) is KeepaliveAction.SEND_PING


def test_unanswered_ping_means_dead_connection() -> None:
    policy = KeepalivePolicy(300.0, timeout=20.0)
    policy.start(0.0)
    assert policy.poll(300.0, active_calls=1) is KeepaliveAction.SEND_PING
    assert policy.seconds_until_due(310.0) == pytest.approx(10.0)
    assert policy.poll(319.0, active_calls=1) is KeepaliveAction.NOTHING
    assert policy.poll(320.0, active_calls=1) is KeepaliveAction.CONNECTION_DEAD


def test_too_many_pings_doubles_the_interval() -> None:
    policy = KeepalivePolicy(300.0)
    policy.too_many_pings()
    assert policy.interval == 600.0
    policy.start(0.0)
    assert policy.poll(599.0, active_calls=1) is KeepaliveAction.NOTHING


def test_permit_without_calls() -> None:
    policy = KeepalivePolicy(300.0, permit_without_calls=True)
    policy.start(0.0)
    assert policy.poll(300.0, active_calls=0) is KeepaliveAction.SEND_PING


@pytest.mark.parametrize(
    "kwargs", [{"interval": 0}, {"interval": -1}, {"interval": 5, "timeout": 0}]
)
def test_bad_settings_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidArgumentError):
        KeepalivePolicy(**kwargs)
