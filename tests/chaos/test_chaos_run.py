"""
The small chaos run in ``make test``: about 100 orders through the real processes with every fault kind
at least once, and not one order, refund or notification out of line with the sandbox's truth, nor one
outbound event missing, doubled in the outbox, badly signed or out of order.
"""

import os

import pytest

from tests.chaos.receiver import ANSWERED_500, DROPPED
from tests.chaos.run import PROCESS_FAULTS, chaos_database_url, run
from tests.chaos.stack import Ports

SANDBOX_FAULT_KINDS = (
    "latency",
    "http_500",
    "http_500_after",
    "timeout_after_create",
    "unsigned_errors",
    "drop",
    "duplicate",
    "reorder",
    "delay",
)


# Usually about two minutes. The drain bound is longer than a reconcile lease (6 minutes): rows a pass
# had claimed when the database connections were dropped are taken again only when their lease ends.
@pytest.mark.timeout(900)
def test_a_hundred_orders_under_every_fault_end_exactly_as_the_gateway_says():
    """Every fault fires at least once; afterwards every order and refund matches the sandbox to the cent,
    every delivered notification is stored, no create was sent twice, nothing is left open or leased, and
    every order's state changes produced exactly their events, each delivered signed, at least once, in order."""
    database_url = chaos_database_url(os.environ["DATABASE_URL"], suffix="_chaos_small")
    lines = []

    outcome = run(
        orders=98, clients=8, drain_seconds=420, database_url=database_url, ports=Ports.free_block(), say=lines.append
    )

    fired = {kind for kind, count in outcome.faults.items() if count}
    assert fired >= set(SANDBOX_FAULT_KINDS) | {name for _, name in PROCESS_FAULTS} | {ANSWERED_500, DROPPED}, (
        outcome.table
    )
    assert outcome.problems == [], outcome.table
    assert outcome.leftovers == {
        "orders_open": 0,
        "refunds_open": 0,
        "operations_unknown": 0,
        "rows_leased": 0,
        "notifications_pending": 0,
        "event_deliveries_pending": 0,
    }, outcome.table
    assert outcome.events.problems == [], outcome.table
    assert outcome.events.recorded > 0 and outcome.events.delivered == outcome.events.recorded, outcome.table
    assert outcome.events.signature_failures == 0, outcome.table
    assert outcome.mismatch_count == 0, outcome.table
    assert len(outcome.convergence) == outcome.orders == 98, outcome.table
