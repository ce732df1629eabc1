"""
The admin driven in a real browser: Debian's headless Chromium through Selenium and chromium-driver,
against the live server on 127.0.0.1. An operator logs in, reads an order that has a refund, refunds
more from the admin and sees the audit event on the order's timeline. The order page is saved as a
screenshot in tests/artifacts/ (the one in docs/img/ is a copy of it).
"""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from payments.models import GatewayCall, Order, OrderStatus, Refund, RefundStatus
from payments.services.operators import OPERATOR_GROUP
from payments.services.refunds import order_refund
from tests.factories import OrderFactory, RefundFactory
from tests.webhooks.conftest import deliveries_for, terminal_order
from webhooks.models import NotificationDelivery
from webhooks.services import notification_apply

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    """Headless Chromium at a 1,366 px wide window; fails with the install command when it is missing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: apt-get install -y chromium chromium-driver (.ci/run does this).")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1366,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _operator_who_may_refund() -> User:
    user = User.objects.create_user(username="olivia", password="operator-password", is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATOR_GROUP))
    user.user_permissions.add(Permission.objects.get(content_type__app_label="payments", codename="refund_order"))
    return user


def _order_with_a_refund(account, sandbox_control) -> Order:
    """Pushed to the sandbox terminal, paid there, the gateway's notification applied, then partly refunded."""
    order = terminal_order(account, "BROWSER-1", amount="42.50")
    sandbox_control.pay("BROWSER-1", pay_method_id="Visa")
    [delivery] = deliveries_for("BROWSER-1", 1)
    notification_apply(delivery_id=delivery.pk)
    order_refund(order=order, amount=Decimal("2.50"), reason="Missing side dish", source="api")
    return Order.objects.get(pk=order.pk)


def _save_screenshot(driver, name: str) -> Path:
    """The whole page, not only the window: the window is stretched to the page's height first."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1366, max(900, height))
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path


def test_operator_reads_an_order_and_refunds_it_in_chromium(browser, live_server, sandbox_account, sandbox_control):
    """
    Logged in as the operator, the order page shows the summary (paid 42.50 USD, refunded 2.50 USD) and a
    timeline with the applied notification and the earlier refund's gateway call; a refund of 5.00 USD from the
    admin succeeds and its audit event, naming the operator, is on the timeline.
    """
    _operator_who_may_refund()
    order = _order_with_a_refund(sandbox_account, sandbox_control)
    wait = WebDriverWait(browser, 20)

    browser.get(f"{live_server.url}/admin/login/?next=/admin/payments/order/{order.pk}/change/")
    browser.find_element(By.NAME, "username").send_keys("olivia")
    browser.find_element(By.NAME, "password").send_keys("operator-password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    summary = wait.until(expected_conditions.presence_of_element_located((By.ID, "order-summary")))
    timeline = browser.find_element(By.ID, "order-timeline")

    assert "Succeeded" in summary.find_element(By.CSS_SELECTOR, ".cp-badge").text
    assert "Paid\n42.50 USD" in summary.text
    assert "Refunded\n2.50 USD" in summary.text
    assert "Paid with\nVisa" in summary.text
    earlier_refund = Refund.objects.get(order=order)
    assert f"order.refund.submit {earlier_refund.merchant_order_no}" in timeline.text
    delivery = NotificationDelivery.objects.get(merchant_order_no="BROWSER-1")
    assert f"notification #{delivery.pk} BROWSER-1 trans_status 2" in timeline.text
    assert "valid, applied" in timeline.text
    _save_screenshot(browser, "admin-order-before-refund.png")

    browser.find_element(By.CSS_SELECTOR, "a.cp-action[href$='/actions/refund/']").click()
    confirm = wait.until(expected_conditions.presence_of_element_located((By.ID, "order-action")))
    assert "at most 40.00 USD can still be refunded." in confirm.text
    amount = browser.find_element(By.NAME, "amount")
    amount.clear()
    amount.send_keys("5.00")
    browser.find_element(By.NAME, "reason").send_keys(" (guest complaint)")
    browser.find_element(By.NAME, "confirm").click()

    timeline = wait.until(expected_conditions.presence_of_element_located((By.ID, "order-timeline")))
    assert "Refund: done." in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text
    assert "by olivia: refund 5.00 USD: Refund by operator (guest complaint)" in timeline.text
    assert "Refunded\n7.50 USD" in browser.find_element(By.ID, "order-summary").text
    assert list(Refund.objects.filter(order=order).order_by("pk").values_list("amount", "status")) == [
        (Decimal("2.50"), RefundStatus.SUCCEEDED),
        (Decimal("5.00"), RefundStatus.SUCCEEDED),
    ]
    assert _save_screenshot(browser, "admin-order.png").stat().st_size > 10_000


def test_changelists_fit_a_1366_pixel_screen(browser, live_server, admin_user, account):
    """
    At 1,366 px wide, the orders, refunds, gateway calls and notification lists need no horizontal scroll,
    and the status badge column is on screen.
    """
    # Numbers as long as the service generates them (28 characters).
    order = OrderFactory(
        account=account,
        merchant_order_no="CP20261126131452019C6F40D64C",
        status=OrderStatus.SUCCEEDED,
        paid_amount=Decimal("10.00"),
        trans_no="52611260000000000001",
    )
    RefundFactory(order=order, account=account, merchant_order_no="CP20261126131455571212E44F94")
    GatewayCall.objects.create(
        account=account,
        method="wisehub.cloud.pay.order",
        merchant_order_no=order.merchant_order_no,
        outcome="ok",
        gateway_code="0",
        gateway_message="success",
        psn="11261311310000000003",
        duration_ms=15,
        created_at=timezone.now(),
    )
    NotificationDelivery.objects.create(
        account=account,
        account_code="default",
        received_at=timezone.now(),
        raw_body=b"{}",
        body_size=2,
        verification="valid",
        merchant_order_no=order.merchant_order_no,
        trans_no="52611260000000000001",
        trans_status="2",
        status="applied",
        order=order,
    )
    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys(admin_user.username)
    browser.find_element(By.NAME, "password").send_keys("password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 20).until(expected_conditions.presence_of_element_located((By.ID, "site-name")))

    widths = {}
    for path in ("payments/order/", "payments/refund/", "payments/gatewaycall/", "webhooks/notificationdelivery/"):
        browser.get(f"{live_server.url}/admin/{path}")
        # The admin scrolls a wide result table inside its own box: compare that box's content to its width.
        widths[path] = browser.execute_script(
            "const box = document.querySelector('#changelist .results'); return box.scrollWidth - box.clientWidth"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / f"list-{path.replace('/', '-').strip('-')}.png"))
    browser.get(f"{live_server.url}/admin/payments/order/")
    badge = browser.find_element(By.CSS_SELECTOR, "#result_list .cp-badge")

    assert widths == dict.fromkeys(widths, 0)
    assert badge.location["x"] + badge.size["width"] <= 1366
