"""
What the client trusts: a success answer (code "0") is acted on only when its signature verifies. The
answer is a genuine one from the sandbox gateway; `responses` replays it at the transport, whole or with
its signature taken away, since the sandbox always signs its successes.
"""

import json
import uuid
from decimal import Decimal

import pytest
import requests
import responses

from payments.gateway.errors import GatewayOutcomeUnknown
from payments.gateway.methods import Method
from tests.payments.gateway.test_client import make_client

FAKE_BASE = "https://codepay.invalid"


@pytest.fixture
def signed_query_answer(sandbox):
    """The raw text of a signed order.query success answer for a fresh checkout."""
    client = make_client(sandbox.base_url)
    number = f"TRUST{uuid.uuid4().hex[:16]}"
    client.create_checkout(
        merchant_order_no=number, amount=Decimal("1.00"), currency="USD", description="x", expires=300
    )
    body = client.build_request(Method.ORDER_QUERY, {"merchant_order_no": number})
    answer = requests.post(f"{sandbox.base_url}/api/entry", json=body, timeout=10)
    assert answer.status_code == 200 and answer.json()["code"] == "0" and answer.json()["sign"]
    return number, answer.text


def _query_with_answer(number: str, text: str):
    with responses.RequestsMock() as transport:
        transport.add(responses.POST, f"{FAKE_BASE}/api/entry", body=text, content_type="application/json")
        return make_client(FAKE_BASE).query_order(merchant_order_no=number)


def test_a_signed_success_answer_is_trusted(signed_query_answer):
    """The genuine answer, signature and all: the order's state is read from it."""
    number, text = signed_query_answer
    assert _query_with_answer(number, text).merchant_order_no == number


@pytest.mark.parametrize("tamper", ["drop", "empty", "null"])
def test_a_success_answer_without_a_signature_is_refused_as_untrusted(signed_query_answer, tamper):
    """The same answer with no sign at all (or an empty or null one): an unknown outcome, never a success."""
    number, text = signed_query_answer
    envelope = json.loads(text)
    if tamper == "drop":
        del envelope["sign"]
    else:
        envelope["sign"] = "" if tamper == "empty" else None
    with pytest.raises(GatewayOutcomeUnknown) as untrusted:
        _query_with_answer(number, json.dumps(envelope))
    assert "signature does not verify" in untrusted.value.message
