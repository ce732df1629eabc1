"""
A fake CodePay gateway for development and tests (HOUSE_STYLE.md, "Layout").

``server.SandboxGateway`` serves the real protocol (``POST /api/entry``, signed requests and answers,
notifications with retries) and a control API under ``/sandbox/`` that plays the terminal and the customer
and injects faults. Plain Python: nothing here imports Django.
"""
