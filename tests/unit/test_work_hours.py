from __future__ import annotations

import pytest

from broker.api.sessions import cookie_value, session_key
from broker.work_hours import parse_work_hours, within


def test_spans_and_midnight() -> None:
    spans = parse_work_hours("09:00-12:00, 22:30-06:00")
    assert spans == ((540, 720), (1350, 1440), (0, 360))
    assert within(spans, 540) and not within(spans, 720) and within(spans, 0) and within(spans, 1439)
    assert not within(spans, 400)
    assert within(parse_work_hours(""), 1000)
    assert parse_work_hours("00:00-24:00") == ((0, 1440),)


@pytest.mark.parametrize("text", ["9-5", "09:00", "25:00-26:00", "09:60-10:00", "10:00-10:00", "x"])
def test_malformed_work_hours_say_which_span(text: str) -> None:
    with pytest.raises(ValueError, match=r"HH:MM|empty|24:00"):
        parse_work_hours(text)


def test_session_cookies() -> None:
    secrets = {"ops": "s3cret-x"}
    value = cookie_value("ops", "s3cret-x", now=1_000)
    assert session_key(value, secrets, now=2_000) == "ops"
    assert session_key(value, secrets, now=10**15) is None  # expired
    assert session_key(value, {"ops": "rotated"}, now=2_000) is None
    assert session_key(value.replace("ops", "opz"), secrets, now=2_000) is None
    assert session_key("garbage", secrets) is None and session_key("", secrets) is None
    assert "s3cret" not in value
