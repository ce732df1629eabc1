"""Every write and side effect of the payment domain. Interfaces (API, admin, webhooks, tasks) call these."""
