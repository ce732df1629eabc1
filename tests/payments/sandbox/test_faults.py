"""Call faults on the sandbox: latency, 500s before and after processing, timeouts after creating."""

import time

import pytest
import requests

from payments.gateway.methods import Method


def test_latency_fault_delays_the_answer(codepay):
    """latency waits `seconds`, then answers normally."""
    codepay.control("POST", "faults", {"method": "order.query", "fault": "latency", "seconds": 0.3})
    started = time.monotonic()

    answer = codepay.call(Method.ORDER_QUERY, merchant_order_no="SLOW")

    assert time.monotonic() - started >= 0.3
    assert answer.code == "E04111"


def test_http_500_fault_answers_500_without_processing(codepay):
    """http_500 fails the call before it is processed: no order exists, and the next call is normal."""
    codepay.control("POST", "faults", {"method": "wisehub.cloud.pay.order", "fault": "http_500"})

    response = codepay.send_signed(Method.CLOUD_PAY_ORDER, **codepay.terminal_order_fields("F500-1"))

    assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert codepay.call(Method.ORDER_QUERY, merchant_order_no="F500-1").code == "E04111"
    assert codepay.terminal_order("F500-1").code == "0"


def test_http_500_after_fault_creates_the_order_but_answers_500(codepay):
    """http_500_after processes the call, then fails it: the order exists although the caller saw a 500."""
    codepay.control("POST", "faults", {"method": "*", "fault": "http_500_after"})

    response = codepay.send_signed(Method.CLOUD_PAY_ORDER, **codepay.terminal_order_fields("F500-2"))

    assert response.status_code == 500
    assert codepay.query("F500-2")["trans_status"] == "9"


def test_timeout_after_create_fault_creates_the_order_then_times_the_caller_out(codepay):
    """timeout_after_create answers too late for the caller's read timeout; the order was created."""
    codepay.control("POST", "faults", {"method": "pay.checkout", "fault": "timeout_after_create", "seconds": 0.5})
    checkout = {"price_currency": "USD", "order_amount": "5.00", "expires": "300", "description": "x"}

    with pytest.raises(requests.ReadTimeout):
        codepay.send_signed(Method.CHECKOUT, timeout=0.2, merchant_order_no="SLOW-1", **checkout)

    assert codepay.query("SLOW-1")["trans_status"] == "9"
    assert next(c["fault"] for c in codepay.control("GET", "calls").json()["calls"]) == "timeout_after_create"


def test_unsigned_errors_fault_sends_error_answers_without_sign_and_leaves_success_signed(codepay):
    """unsigned_errors drops `sign` from error answers only; a success answer in between stays signed."""
    codepay.control("POST", "faults", {"method": "*", "fault": "unsigned_errors", "times": 2})

    created = codepay.send_signed(Method.CLOUD_PAY_ORDER, **codepay.terminal_order_fields("UNS-1")).json()
    first = codepay.send_signed(Method.ORDER_QUERY, merchant_order_no="UNS-X").json()
    second = codepay.send_signed(Method.ORDER_QUERY, merchant_order_no="UNS-X").json()
    third = codepay.send_signed(Method.ORDER_QUERY, merchant_order_no="UNS-X").json()

    assert (created["code"], "sign" in created) == ("0", True)
    assert (first["code"], "sign" in first) == ("E04111", False)
    assert (second["code"], "sign" in second) == ("E04111", False)
    assert (third["code"], "sign" in third) == ("E04111", True)
    faults = [c["fault"] for c in codepay.control("GET", "calls").json()["calls"]]
    assert faults == ["", "unsigned_errors", "unsigned_errors", ""]


def test_method_specific_fault_leaves_other_methods_alone(codepay):
    """A fault for one method is not used up by calls to another."""
    codepay.control("POST", "faults", {"method": "order.refund.query", "fault": "http_500"})

    assert codepay.call(Method.ORDER_QUERY, merchant_order_no="X").code == "E04111"
    assert codepay.send_signed(Method.REFUND_QUERY, merchant_order_no="X").status_code == 500


def test_fault_with_times_fires_that_often_and_rate_fires_until_cleared(codepay):
    """times=2 fails two calls then stops; rate=1 fails every call until DELETE /sandbox/faults."""

    def query_status() -> int:
        return codepay.send_signed(Method.ORDER_QUERY, merchant_order_no="X").status_code

    codepay.control("POST", "faults", {"method": "order.query", "fault": "http_500", "times": 2})
    counted = [query_status() for _ in range(3)]
    codepay.control("POST", "faults", {"method": "*", "fault": "http_500", "rate": 1})
    always = [query_status() for _ in range(3)]
    codepay.control("DELETE", "faults")

    assert counted == [500, 500, 200]
    assert always == [500, 500, 500]
    assert query_status() == 200


@pytest.mark.parametrize(
    "spec",
    [
        {"fault": "meltdown"},
        {"method": "order.teleport", "fault": "http_500"},
        {"fault": "http_500", "times": 0},
        {"fault": "http_500", "rate": 2},
        {"fault": "http_500", "times": 1, "rate": 0.5},
        {"fault": "latency", "seconds": "slow"},
    ],
)
def test_malformed_fault_is_refused_with_400(codepay, spec):
    """The control API says what is wrong with a fault instead of guessing."""
    response = codepay.control("POST", "faults", spec)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_reset_forgets_orders_and_faults(codepay):
    """POST /sandbox/reset empties the sandbox: orders, calls and faults."""
    codepay.terminal_order("GONE")
    codepay.control("POST", "faults", {"method": "*", "fault": "http_500", "rate": 1})

    assert codepay.control("POST", "reset").json() == {"reset": True}

    assert codepay.call(Method.ORDER_QUERY, merchant_order_no="GONE").code == "E04111"
    assert len(codepay.control("GET", "calls").json()["calls"]) == 1


def test_unsigned_errors_fault_leaves_error_answers_unsigned_and_successes_signed(codepay):
    """
    unsigned_errors sends every refusal (code != "0") without `sign`, as a gateway that never signs its
    errors would; success answers stay signed, and `times` counts error answers only.
    """
    added = codepay.control("POST", "faults", {"fault": "unsigned_errors", "times": 2})
    assert added.status_code == 201, added.text

    success = codepay.terminal_order("UNSIGNED-1")  # verified by the helper
    answers = [codepay.send_signed(Method.ORDER_QUERY, merchant_order_no=f"NOT-THERE-{n}").json() for n in range(3)]

    assert success.code == "0"
    assert [(a["code"], "sign" in a) for a in answers] == [("E04111", False), ("E04111", False), ("E04111", True)]
