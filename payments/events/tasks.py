"""Celery tasks for outbound events: thin wrappers over payments.events.services (ids in, counts out)."""

from __future__ import annotations

from celery import shared_task

from codepay_service.tasks import CodePayTask
from payments.events.services import event_chain_send, event_deliveries_send_due


@shared_task(base=CodePayTask, name="payments.events.tasks.send_event_chain", soft_time_limit=120, time_limit=150)
def send_event_chain(endpoint_id: int, order_id: int | None) -> int:
    """Send the due events of one endpoint for one order, oldest first (queued on the commit that wrote them)."""
    return event_chain_send(endpoint_id=endpoint_id, order_id=order_id)


@shared_task(
    base=CodePayTask, name="payments.events.tasks.send_due_event_deliveries", soft_time_limit=45, time_limit=60
)
def send_due_event_deliveries() -> int:
    """The periodic sweep: retries that are due, chains whose queued task was lost, re-enabled endpoints."""
    return event_deliveries_send_due(time_budget_seconds=25.0)
