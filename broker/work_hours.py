"""An account's `work_hours`: when it takes new tasks, as `"09:00-23:00"` in the operator's timezone.

Several spans may be given, separated by commas (`"09:00-12:00, 14:00-23:30"`); a span whose end is
before its start runs past midnight (`"22:00-06:00"`). The end minute is excluded. Empty = always.
"""

from __future__ import annotations

import re

__all__ = ["WorkHours", "parse_work_hours", "within"]

_SPAN = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-4]):([0-5]\d)")

#: spans in minutes of the day, [start, end); end > start (a span past midnight is split in two)
WorkHours = tuple[tuple[int, int], ...]


def parse_work_hours(text: str) -> WorkHours:
    """The spans of `text`; `ValueError` says what is wrong, quoting the bad span."""
    spans: list[tuple[int, int]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = _SPAN.fullmatch(part)
        if match is None:
            raise ValueError(f"{part!r} is not HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end > 24 * 60:
            raise ValueError(f"{part!r} ends after 24:00")
        if start == end:
            raise ValueError(f"{part!r} is empty")
        if end > start:
            spans.append((start, end))
        else:  # past midnight
            spans.append((start, 24 * 60))
            if end:
                spans.append((0, end))
    return tuple(spans)


def within(spans: WorkHours, minute_of_day: int) -> bool:
    """Whether `minute_of_day` (0..1439) falls in one of `spans`; no spans = always."""
    return not spans or any(start <= minute_of_day < end for start, end in spans)
