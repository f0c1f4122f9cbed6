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


def test_renewed_keeps_the_backed_off_settings_but_not_the_connection_state() -> None:
    policy = KeepalivePolicy(300.0, timeout=30.0, permit_without_calls=True)
    policy.too_many_pings()
    policy.start(0.0)
    assert policy.poll(600.0, active_calls=1) is KeepaliveAction.SEND_PING

    renewed = policy.renewed()
    assert renewed is not policy
    assert renewed.enabled
    assert renewed.interval == 600.0
    assert renewed.timeout == 30.0
    assert renewed.permit_without_calls
    # No ping is outstanding on the new connection: the old one's ping, long
    # past its timeout, neither kills it nor holds back its own pings.
    renewed.start(1000.0)
    assert renewed.seconds_until_due(1000.0) == pytest.approx(600.0)
    assert renewed.poll(1000.0, active_calls=0) is KeepaliveAction.NOTHING
    assert renewed.poll(1599.0, active_calls=0) is KeepaliveAction.NOTHING
    assert renewed.poll(1600.0, active_calls=0) is KeepaliveAction.SEND_PING
    assert renewed.poll(1629.0, active_calls=0) is KeepaliveAction.NOTHING
    assert renewed.poll(1630.0, active_calls=0) is KeepaliveAction.CONNECTION_DEAD
    # The two policies are independent from here on.
    renewed.too_many_pings()
    assert renewed.interval == 1200.0
    assert policy.interval == 600.0


def test_renewed_keeps_an_interval_below_the_default_enforcement() -> None:
    policy = KeepalivePolicy(10.0, timeout=5.0, min_interval=10.0)
    renewed = policy.renewed()
    assert renewed.interval == 10.0
    assert renewed.timeout == 5.0
    assert not renewed.permit_without_calls
    renewed.start(0.0)
    assert renewed.poll(10.0, active_calls=0) is KeepaliveAction.NOTHING
    assert renewed.poll(10.0, active_calls=1) is KeepaliveAction.SEND_PING


def test_renewed_disabled_policy_stays_disabled() -> None:
    renewed = KeepalivePolicy(None).renewed()
    assert not renewed.enabled
    renewed.start(0.0)
    assert renewed.poll(10_000.0, active_calls=1) is KeepaliveAction.NOTHING
    assert renewed.seconds_until_due(10_000.0) is None


def test_idle_connection_is_checked_again_one_interval_later() -> None:
    policy = KeepalivePolicy(300.0)
    policy.start(0.0)
    assert policy.seconds_until_due(0.0) == pytest.approx(300.0)
    # Due, but no call to keep alive: nothing now, and not due again at once.
    assert policy.poll(300.0, active_calls=0) is KeepaliveAction.NOTHING
    assert policy.seconds_until_due(300.0) == pytest.approx(300.0)
    assert policy.seconds_until_due(450.0) == pytest.approx(150.0)
    # Each idle poll moves the next look one interval on from itself.
    assert policy.poll(450.0, active_calls=0) is KeepaliveAction.NOTHING
    assert policy.seconds_until_due(450.0) == pytest.approx(300.0)
    # A call starts at 500; a driver that waits as told wakes at 750, at most
    # one interval after the last idle poll, and pings then.
    wake = 500.0 + policy.seconds_until_due(500.0)
    assert wake == pytest.approx(750.0)
    assert policy.poll(wake, active_calls=1) is KeepaliveAction.SEND_PING


def test_an_active_call_ends_the_idle_wait() -> None:
    policy = KeepalivePolicy(300.0)
    policy.start(0.0)
    policy.data_received(100.0)
    assert policy.poll(350.0, active_calls=0) is KeepaliveAction.NOTHING
    assert policy.seconds_until_due(350.0) == pytest.approx(300.0)
    # With a call active the read-silence rule alone counts again: due at 400.
    assert policy.poll(360.0, active_calls=1) is KeepaliveAction.NOTHING
    assert policy.seconds_until_due(360.0) == pytest.approx(40.0)
    assert policy.poll(400.0, active_calls=1) is KeepaliveAction.SEND_PING


def test_outstanding_ping_wakes_one_interval_later_when_the_timeout_is_longer() -> None:
    policy = KeepalivePolicy(300.0, timeout=1000.0)
    policy.start(0.0)
    assert policy.poll(300.0, active_calls=1) is KeepaliveAction.SEND_PING
    # A driver that only re-arms its timer from seconds_until_due, here right
    # after sending the ping, wakes at ping time + interval, not + timeout...
    wake = 300.0 + policy.seconds_until_due(300.0)
    assert wake == pytest.approx(600.0)
    # ...so the ack read in between (without re-arming) still leads to the
    # next ping one interval after it.
    policy.data_received(310.0)
    assert policy.poll(wake, active_calls=1) is KeepaliveAction.NOTHING
    wake += policy.seconds_until_due(wake)
    assert wake == pytest.approx(610.0)
    assert policy.poll(wake, active_calls=1) is KeepaliveAction.SEND_PING


def test_outstanding_ping_unanswered_past_the_interval_is_dead_at_the_timeout() -> None:
    policy = KeepalivePolicy(300.0, timeout=1000.0)
    policy.start(0.0)
    assert policy.poll(300.0, active_calls=1) is KeepaliveAction.SEND_PING
    assert policy.seconds_until_due(300.0) == pytest.approx(300.0)
    # Nothing read by ping time + interval: next wake is ping time + timeout.
    assert policy.poll(600.0, active_calls=1) is KeepaliveAction.NOTHING
    assert policy.seconds_until_due(600.0) == pytest.approx(700.0)
    assert policy.seconds_until_due(1000.0) == pytest.approx(300.0)
    assert policy.poll(1299.0, active_calls=1) is KeepaliveAction.NOTHING
    assert policy.poll(1300.0, active_calls=1) is KeepaliveAction.CONNECTION_DEAD
    assert policy.seconds_until_due(1300.0) == 0.0


def test_outstanding_ping_wakes_at_the_timeout_when_it_is_shorter() -> None:
    policy = KeepalivePolicy(300.0, timeout=20.0)
    policy.start(0.0)
    assert policy.poll(300.0, active_calls=1) is KeepaliveAction.SEND_PING
    assert policy.seconds_until_due(300.0) == pytest.approx(20.0)
    assert policy.poll(320.0, active_calls=1) is KeepaliveAction.CONNECTION_DEAD
