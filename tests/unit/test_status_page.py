"""The status page's HTML from a snapshot: pure rendering, everything from outside escaped."""

from __future__ import annotations

import re

from broker.api.status_data import Snapshot
from broker.api.status_page import chart, render_main
from broker.api.types import AccountView
from broker.config import Account
from broker.hook_receivers import ReceiverFailure
from broker.models import Task, TaskAction, TaskStatus
from broker.usage import Usage, UsageRow


def _usage(days: list[UsageRow]) -> Usage:
    total = UsageRow(key=None, tasks=sum(d.tasks for d in days), images=sum(d.images for d in days))
    return Usage(since=0, until=1, timezone="UTC", api_key=None, total=total, by_day=days, by_action=[],
                 by_mode=[], by_status=[UsageRow(key="SUCCESS", tasks=total.tasks, images=total.images)],
                 by_api_key=[], by_account=[UsageRow(key="a1", tasks=3, images=12)])  # fmt: skip


def test_the_chart_draws_one_bar_per_day_scaled_to_the_busiest() -> None:
    days = [UsageRow(key=f"2026-03-0{i}", tasks=t, images=0) for i, t in enumerate([0, 5, 10], start=1)]
    svg = chart(days)
    heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]* height="([\d.]+)"', svg)]
    assert len(heights) == 3 and heights[0] == 0 and heights[2] == 2 * heights[1] > 0
    assert "2026-03-03: 10 tasks" in svg and "max 10/day" in svg


def test_the_page_shows_accounts_tasks_and_receivers_with_everything_escaped() -> None:
    account = Account(id="a1", guild_id="1", channel_id="2", token="tok-never-shown", daily_limit=50)
    view = AccountView(id="a1", guild_id="1", channel_id="2", user_agent="", enable=True, core_size=3,
                       queue_size=10, timeout_minutes=5, properties={}, status="PAUSED",
                       status_reason="<b>captcha</b>", running=2, waiting=4)  # fmt: skip
    task = Task(id="77", action=TaskAction.IMAGINE, status=TaskStatus.FAILURE, prompt="<i>fox</i>",
                fail_reason="a & b", image_url="javascript:alert(1)")  # fmt: skip
    done = Task(
        id="78", action=TaskAction.UPSCALE, status=TaskStatus.SUCCESS, image_url="https://cdn.example/x.png"
    )
    failing = ReceiverFailure(receiver="hooks.example:443", failures=3, first_failure_ms=1, last_failure_ms=2,
                              last_error="HTTP 503 <html>")  # fmt: skip
    month = _usage([UsageRow(key="2026-03-01", tasks=3, images=1)])
    snap = Snapshot(now_ms=1_700_000_000_000, key="ops", worker_alive=False, accounts=[(account, view)],
                    hooks_due=7, tasks=[task, done], receivers=[failing], today=_usage([]),
                    month=month)  # fmt: skip
    html = render_main(snap, "UTC")
    assert "&lt;b&gt;captcha&lt;/b&gt;" in html and "<b>captcha" not in html
    assert "&lt;i&gt;fox&lt;/i&gt;" in html and "a &amp; b" in html and "HTTP 503 &lt;html&gt;" in html
    assert "tok-never-shown" not in html
    assert "2 / 3" in html and "4 / 10" in html and "3 / 50" in html  # load and today's tasks vs the limit
    assert "No worker process is running" in html and ">7<" in html
    assert "javascript:" not in html  # only http(s) thumbnails
    assert '<img class="thumb" src="https://cdn.example/x.png"' in html and 'loading="lazy"' in html
