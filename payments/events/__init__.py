"""
Outbound events: store systems register endpoints and receive signed events about their orders and refunds.

Why a database outbox: an event row (and one delivery row per matching endpoint) is written by
``order_event``, inside the same transaction as the state change it reports, so a committed change always
has its event and a rolled-back one never does. Delivery happens after the commit, from those rows, by
Celery and a periodic sweep: at least once, retried with back-off for three days.

Why events of one order go out one at a time per endpoint: a store system that receives ``refund.succeeded``
before ``order.succeeded`` would act on a refund of an order it believes unpaid. Deliveries of one
(endpoint, order) chain are sent oldest first; a later event waits until the earlier one was delivered
(or given up on).

Layout: ``models`` (endpoints, events, deliveries, attempts), ``signing`` (the signature header),
``services`` (record, send, sweep, replay, endpoint changes), ``tasks``, ``api``/``serializers``, ``admin``,
``schema`` (the events in the OpenAPI document).
"""
