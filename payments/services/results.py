"""
What a write that talks to the gateway answers: the row it wrote, and whether the gateway's outcome is known.

An order create, a refund and an order operation all end the same three ways: the gateway answered (the row
shows its answer), the gateway refused (an error is raised), or the answer was lost (``outcome_unknown``:
the row is kept as ``unknown`` and looked up later, never resent). Interfaces render from this result
(202 for an unknown outcome) instead of re-deriving it from a status string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class WriteResult(Generic[T]):
    obj: T
    outcome_unknown: bool
