"""Failover under load, short (one kill each), on the session's 3-node cluster.

The long run (a kill every 10 s) is ``python tests/failover/failover.py``;
its figures are in docs/reliability.md. The publisher of the subscription run
goes as fast as acks allow (the high-watermark lag that made resubscriptions
repeat messages shows at that rate); the consumer-group run publishes 1 000
messages a second. The ack gap is measured and printed here, not asserted:
set ``PYLIFTBRIDGE_ACK_GAP_TARGET`` (seconds) to assert it.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from failover import format_report, run_failover

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(240)]

GAP_TARGET = os.environ.get("PYLIFTBRIDGE_ACK_GAP_TARGET")


@pytest.mark.parametrize("group", [False, True], ids=["subscriptions", "consumer-group"])
def test_leader_killed_and_restarted_under_load(liftbridge_cluster, group):
    report = asyncio.run(
        run_failover(
            liftbridge_cluster,
            f"failover-{uuid.uuid4().hex[:8]}",
            kills=1,
            every=6.0,
            down=3.0,
            group=group,
            rate=None if not group else 1000.0,
            gap_target=None if GAP_TARGET is None else float(GAP_TARGET),
        )
    )
    print(format_report(report))
    assert not report.failures, format_report(report)
