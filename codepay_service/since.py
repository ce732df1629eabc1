"""``--since`` for the management commands: a moment given as an ISO date or date-time, or a duration back from now."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime, parse_duration

_COMPACT_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_since(value: str, *, now: datetime | None = None) -> datetime:
    """An ISO date or datetime, or a duration back from now ("90m", "2h", "3d", "1w2d", "P1DT2H")."""
    now = now or timezone.now()
    text = value.strip()
    match = _COMPACT_DURATION.match(text)
    if text and match and any(match.groups()):
        weeks, days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
        return now - timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    moment = parse_datetime(text)
    if moment is None and (day := parse_date(text)) is not None:
        moment = datetime.combine(day, time.min)
    if moment is not None:
        return moment if timezone.is_aware(moment) else timezone.make_aware(moment, timezone.get_default_timezone())
    duration = parse_duration(text)
    if duration is not None:
        return now - duration
    raise ValueError(f"'{value}' is neither an ISO date or datetime nor a duration like 90m, 2h, 3d")
