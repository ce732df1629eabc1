# The sandbox wired to notify the live server, as in the notification receiver's tests.
from tests.webhooks.conftest import receiver_settings, sandbox_account  # noqa: F401
