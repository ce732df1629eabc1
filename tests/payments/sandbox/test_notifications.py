"""Notifications from the sandbox to notify_url: signed, retried on failure, and faulty on request."""

import time

from payments.gateway import signing


def test_paid_order_sends_one_signed_notification(codepay, receiver):
    """Paying an order POSTs the flat, gateway-signed transaction to its notify_url once."""
    merchant = receiver()
    created = codepay.terminal_order("NOTE-1", "144.34", tip_amount="30.00", notify_url=merchant.url)

    codepay.pay("NOTE-1")

    [body] = merchant.wait_for(1)
    assert signing.verify(body, body["sign"], codepay.gateway_public_key) is True
    assert body == {
        "app_id": codepay.app_id,
        "merchant_no": codepay.merchant_no,
        "sign_type": "RSA2",
        "trans_no": created.data["trans_no"],
        "merchant_order_no": "NOTE-1",
        "orig_merchant_order_no": "",
        "trans_type": "1",
        "trans_status": "2",
        "price_currency": "USD",
        "order_amount": "144.34",
        "tip_amount": "30.00",
        "trans_amount": "174.34",
        "paid_amount": "174.34",
        "cashback_amount": "0.00",
        "attach": "",
        "pay_method_id": "Visa",
        "pay_scenario": "SWIPE_CARD",
        "terminal_sn": "WPYB002248000865",
        "trans_end_time": body["trans_end_time"],
        "sign": body["sign"],
    }
    [attempt] = codepay.notification_attempts("NOTE-1", 1)
    assert (attempt["attempt"], attempt["outcome"], attempt["http_status"], attempt["body"]) == (
        1,
        "delivered",
        200,
        "success",
    )


def test_refund_notification_names_the_original_order(codepay, receiver):
    """A refund notifies its own notify_url with trans_type 3 and orig_merchant_order_no."""
    merchant = receiver()
    codepay.paid_sale("NOTE-2", "10.00")

    codepay.refund("NOTE-2", "NOTE-2-R", "4.00", notify_url=merchant.url)

    [body] = merchant.wait_for(1)
    assert (body["merchant_order_no"], body["orig_merchant_order_no"], body["trans_type"]) == (
        "NOTE-2-R",
        "NOTE-2",
        "3",
    )
    assert (body["trans_status"], body["order_amount"]) == ("2", "4.00")
    assert signing.verify(body, body["sign"], codepay.gateway_public_key) is True


def test_failed_deliveries_are_retried_until_the_merchant_answers_success(codepay, receiver):
    """Anything but HTTP 200 "success" is a failure and is retried on the (scaled) schedule."""
    merchant = receiver((200, "fail"), (500, "oops"))
    codepay.terminal_order("NOTE-3", notify_url=merchant.url)

    codepay.pay("NOTE-3")

    bodies = merchant.wait_for(3)
    assert [b["trans_status"] for b in bodies] == ["2", "2", "2"]
    attempts = codepay.notification_attempts("NOTE-3", 3)
    assert [(a["attempt"], a["outcome"], a["http_status"], a["body"]) for a in attempts] == [
        (1, "failed", 200, "fail"),
        (2, "failed", 500, "oops"),
        (3, "delivered", 200, "success"),
    ]


def test_dropped_notification_is_never_sent(codepay, receiver):
    """The drop fault loses the notification: nothing arrives and the attempt is recorded as dropped."""
    merchant = receiver()
    codepay.control("POST", "notification-faults", {"fault": "drop"})
    codepay.terminal_order("NOTE-4", notify_url=merchant.url)

    codepay.pay("NOTE-4")

    [attempt] = codepay.notification_attempts("NOTE-4", 1)
    assert (attempt["outcome"], attempt["trans_status"]) == ("dropped", "2")
    assert merchant.bodies == []


def test_duplicate_fault_delivers_identical_copies(codepay, receiver):
    """The duplicate fault delivers `count` identical signed copies concurrently."""
    merchant = receiver()
    codepay.control("POST", "notification-faults", {"fault": "duplicate", "count": 3})
    codepay.terminal_order("NOTE-5", notify_url=merchant.url)

    codepay.pay("NOTE-5")

    bodies = merchant.wait_for(3)
    assert bodies[0] == bodies[1] == bodies[2]
    assert signing.verify(bodies[0], bodies[0]["sign"], codepay.gateway_public_key) is True


def test_reorder_fault_sends_a_stale_in_progress_notification_after_the_final_one(codepay, receiver):
    """After the final notification, a validly signed status-0 one arrives for the same order."""
    merchant = receiver()
    codepay.control("POST", "notification-faults", {"fault": "reorder"})
    codepay.terminal_order("NOTE-6", notify_url=merchant.url)

    codepay.pay("NOTE-6")

    final, stale = merchant.wait_for(2)
    assert (final["trans_status"], final["paid_amount"]) == ("2", "10.00")
    assert (stale["trans_status"], stale["paid_amount"], stale["trans_no"]) == ("0", "0.00", final["trans_no"])
    assert signing.verify(stale, stale["sign"], codepay.gateway_public_key) is True


def test_delay_fault_holds_the_notification_back(codepay, receiver):
    """The delay fault sends the notification `seconds` late."""
    merchant = receiver()
    codepay.control("POST", "notification-faults", {"fault": "delay", "seconds": 0.3})
    codepay.terminal_order("NOTE-7", notify_url=merchant.url)
    paid_at = time.monotonic()

    codepay.pay("NOTE-7")

    merchant.wait_for(1)
    assert merchant.received_at[0] - paid_at >= 0.3


def test_notification_faults_apply_once_by_default(codepay, receiver):
    """A fault without times or rate fires once; the next notification is normal."""
    merchant = receiver()
    codepay.control("POST", "notification-faults", {"fault": "drop"})
    codepay.terminal_order("NOTE-8", notify_url=merchant.url)
    codepay.terminal_order("NOTE-9", notify_url=merchant.url)

    codepay.pay("NOTE-8")
    codepay.pay("NOTE-9")

    [body] = merchant.wait_for(1)
    assert body["merchant_order_no"] == "NOTE-9"
