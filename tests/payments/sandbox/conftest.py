"""Fixtures for the sandbox tests; the helpers they hand out live in helpers.py."""

import pytest

from tests.payments.sandbox.helpers import CodePay, NotificationReceiver


@pytest.fixture
def codepay(sandbox_reset):
    return CodePay(sandbox_reset.base_url)


@pytest.fixture
def receiver():
    """Make notification receivers; all are closed after the test."""
    made = []

    def make(*answers: tuple[int, str]) -> NotificationReceiver:
        made.append(NotificationReceiver(answers))
        return made[-1]

    yield make
    for one in made:
        one.close()
