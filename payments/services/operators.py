"""
The read-only operator group: may look at every order, refund, gateway call, batch close and notification,
and change nothing. Operators who may move money get the single permission they need on top
(``payments.refund_order``, ``capture_order``, ``void_order``, ``adjust_tip_order``, ``sync_order``).

The group is ensured after every ``migrate`` (post_migrate, idempotent) rather than by a data migration:
view permissions only exist once ``migrate`` has created them, and a test database that is flushed
between tests gets the group back the same way.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

OPERATOR_GROUP = "Operators (read-only)"
# The apps whose records an operator reads; by label, so payments need not import webhooks.
OPERATOR_APP_LABELS = ("payments", "webhooks")
# Nobody needs these to work a payment; they hold key hashes and replay records.
NOT_FOR_OPERATORS = ("view_idempotencyrecord", "view_merchantordernumber")


def operator_group_ensure() -> Group:
    """Create the group if missing and give it every view permission of the operator apps; idempotent."""
    group, _ = Group.objects.get_or_create(name=OPERATOR_GROUP)
    view = Permission.objects.filter(
        content_type__app_label__in=OPERATOR_APP_LABELS, codename__startswith="view_"
    ).exclude(codename__in=NOT_FOR_OPERATORS)
    group.permissions.add(*view)
    return group
