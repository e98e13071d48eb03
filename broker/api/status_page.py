"""The status page's HTML, rendered on the server from a `Snapshot`: pure functions, no I/O.

Every value from outside (account reasons, prompts, fail reasons, URLs, errors) goes through
`html.escape`. The page has no inline script or style (the Content-Security-Policy allows only
the page's own files, `broker.api.status_assets`); the chart is inline SVG drawn with attributes.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from broker.api.status_data import Snapshot
from broker.models import Task
from broker.usage import Usage, UsageRow

__all__ = ["render_main", "render_page"]

_CHART_W, _CHART_H, _CHART_PAD = 600, 140, 18
_STATUS_CLASS = {
    "ONLINE": "ok",
    "SUCCESS": "ok",
    "CONNECTING": "warn",
    "RATE_LIMITED": "warn",
    "PAUSED": "warn",
    "NOT_START": "idle",
    "MODAL": "idle",
    "SUBMITTED": "busy",
    "IN_PROGRESS": "busy",
    "DISABLED": "bad",
    "FAILURE": "bad",
    "CANCEL": "idle",
}


def _badge(status: str | None) -> str:
    text = status or "UNKNOWN"
    return f'<span class="badge {_STATUS_CLASS.get(text, "idle")}">{escape(text)}</span>'


def _time(ms: int | None, zone: ZoneInfo, *, with_date: bool = False) -> str:
    if not ms:
        return "-"
    moment = datetime.fromtimestamp(ms / 1000, zone)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def _count(rows: list[UsageRow], key: str) -> int:
    return next((r.tasks for r in rows if r.key == key), 0)


def _usage(today: Usage) -> str:
    s = today.by_status
    cells = [
        ("tasks", today.total.tasks),
        ("images", today.total.images),
        ("succeeded", _count(s, "SUCCESS")),
        ("failed", _count(s, "FAILURE")),
        ("cancelled", _count(s, "CANCEL")),
    ]
    figures = "".join(f'<div class="figure"><b>{n}</b><span>{label}</span></div>' for label, n in cells)
    actions = ", ".join(f"{escape(r.key or '?')} {r.tasks}" for r in today.by_action) or "none yet"
    return f'<div class="figures">{figures}</div><p class="muted">By action: {actions}</p>'


def chart(days: list[UsageRow]) -> str:
    """Tasks per day as an inline SVG bar chart (a <title> per bar for its figures)."""
    most = max((d.tasks for d in days), default=0) or 1
    inner_h = _CHART_H - 2 * _CHART_PAD
    step = (_CHART_W - 2 * _CHART_PAD) / max(len(days), 1)
    bars = []
    for i, day in enumerate(days):
        h = round(inner_h * day.tasks / most, 1)
        x = round(_CHART_PAD + i * step + step * 0.15, 1)
        y = round(_CHART_H - _CHART_PAD - h, 1)
        label = f"{day.key}: {day.tasks} tasks, {day.images} images"
        bars.append(
            f'<rect class="bar" x="{x}" y="{y}" width="{round(step * 0.7, 1)}" height="{h}">'
            f"<title>{escape(label)}</title></rect>"
        )
    first = escape(days[0].key or "") if days else ""
    last = escape(days[-1].key or "") if days else ""
    base = _CHART_H - _CHART_PAD
    return (
        f'<svg class="chart" viewBox="0 0 {_CHART_W} {_CHART_H}" role="img" '
        f'aria-label="tasks per day, {first} to {last}">'
        f'<line x1="{_CHART_PAD}" y1="{base}" x2="{_CHART_W - _CHART_PAD}" y2="{base}" class="axis"/>'
        f"{''.join(bars)}"
        f'<text x="{_CHART_PAD}" y="{_CHART_H - 3}" class="label">{first}</text>'
        f'<text x="{_CHART_W - _CHART_PAD}" y="{_CHART_H - 3}" class="label" text-anchor="end">{last}</text>'
        f'<text x="{_CHART_PAD}" y="12" class="label">max {most}/day</text></svg>'
    )


def _accounts(snap: Snapshot, today: Usage) -> str:
    done_today = {r.key: r.tasks for r in today.by_account}
    rows = []
    for config, view in snap.accounts:
        limit = f" / {config.daily_limit}" if config.daily_limit else ""
        hours = escape(config.work_hours) if config.work_hours else "always"
        modes = escape(", ".join(str(m) for m in config.modes))
        enabled = "" if config.enabled else ' <span class="badge idle">disabled in config</span>'
        rows.append(
            f'<tr><td data-label="account"><b>{escape(view.id)}</b>{enabled}</td>'
            f'<td data-label="status">{_badge(view.status)}'
            f'<div class="muted small">{escape(view.status_reason or "")}</div></td>'
            f'<td data-label="modes">{modes}</td>'
            f'<td data-label="running">{view.running} / {view.core_size}</td>'
            f'<td data-label="queued">{view.waiting} / {view.queue_size}</td>'
            f'<td data-label="today">{done_today.get(view.id, 0)}{limit}</td>'
            f'<td data-label="hours">{hours}</td></tr>'
        )
    if not rows:
        return '<p class="muted">No accounts configured.</p>'
    head = "".join(
        f"<th>{h}</th>" for h in ("account", "status", "modes", "running", "queued", "today", "hours")
    )
    return f'<table class="rows"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _queues(snap: Snapshot) -> str:
    running = sum(v.running for _, v in snap.accounts)
    slots = sum(v.core_size for _, v in snap.accounts)
    waiting = sum(v.waiting for _, v in snap.accounts)
    room = sum(v.queue_size for _, v in snap.accounts)
    worker = "" if snap.worker_alive else '<p class="alert">No worker process is running.</p>'
    cells = [
        ("running", f"{running} / {slots}"),
        ("queued", f"{waiting} / {room}"),
        ("hook deliveries due", str(snap.hooks_due)),
    ]
    figures = "".join(f'<div class="figure"><b>{v}</b><span>{label}</span></div>' for label, v in cells)
    return f'{worker}<div class="figures">{figures}</div>'


def _thumb(task: Task) -> str:
    url = task.image_url or ""
    if not url.startswith(("http://", "https://", "/")):
        return '<div class="thumb empty"></div>'
    return (
        f'<img class="thumb" src="{escape(url)}" alt="task {escape(task.id)}" '
        'width="96" height="96" loading="lazy" referrerpolicy="no-referrer">'
    )


def _tasks(snap: Snapshot, zone: ZoneInfo) -> str:
    cards = []
    for t in snap.tasks:
        fail = f'<div class="fail">{escape(t.fail_reason)}</div>' if t.fail_reason else ""
        progress = f" {escape(t.progress)}" if t.progress and t.status != "SUCCESS" else ""
        prompt = escape((t.prompt or "")[:160])
        cards.append(
            f'<li class="task" data-task="{escape(t.id)}">{_thumb(t)}<div class="meta">'
            f"<div>{_badge(str(t.status))}{progress} <b>{escape(str(t.action))}</b></div>"
            f'<div class="muted small">{escape(t.id)} · {escape(t.instance_id or "-")} · '
            f"{escape(t.api_key_name or '-')} · {_time(t.submit_time, zone)}</div>"
            f'<div class="prompt">{prompt}</div>{fail}</div></li>'
        )
    if not cards:
        return '<p class="muted">No tasks yet.</p>'
    return f'<ul class="tasks">{"".join(cards)}</ul>'


def _receivers(snap: Snapshot, zone: ZoneInfo) -> str:
    if not snap.receivers:
        return '<p class="muted">None in the last hour.</p>'
    rows = "".join(
        f'<tr><td data-label="receiver"><code>{escape(r.receiver)}</code></td>'
        f'<td data-label="failures">{r.failures}</td>'
        f'<td data-label="since">{_time(r.first_failure_ms, zone, with_date=True)}</td>'
        f'<td data-label="last">{_time(r.last_failure_ms, zone, with_date=True)}</td>'
        f'<td data-label="error">{escape(r.last_error)}</td></tr>'
        for r in snap.receivers
    )
    head = "".join(f"<th>{h}</th>" for h in ("receiver", "failures in a row", "since", "last", "last error"))
    return f'<table class="rows"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def render_main(snap: Snapshot, timezone: str) -> str:
    """The page's <main> content: what the refresh script fetches again every few seconds."""
    zone = ZoneInfo(timezone)
    stamp = _time(snap.now_ms, zone, with_date=True)
    return (
        f'<p class="muted small" id="updated">Updated {stamp} ({escape(timezone)})</p>'
        f"<section><h2>Usage today</h2>{_usage(snap.today)}"
        f"<h3>Tasks per day, last {len(snap.month.by_day)} days</h3>{chart(snap.month.by_day)}</section>"
        f"<section><h2>Accounts</h2>{_accounts(snap, snap.today)}</section>"
        f"<section><h2>Queues</h2>{_queues(snap)}</section>"
        f"<section><h2>Latest tasks</h2>{_tasks(snap, zone)}</section>"
        f"<section><h2>Failing hook receivers</h2>{_receivers(snap, zone)}</section>"
    )


def render_page(snap: Snapshot, timezone: str) -> str:
    """The whole page; without JavaScript it reloads itself (the <noscript> refresh)."""
    who = f"signed in as <b>{escape(snap.key)}</b>" if snap.key else "open (no api keys configured)"
    logout = (
        '<form method="post" action="/admin/logout"><button type="submit">Sign out</button></form>'
        if snap.key
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mjbroker status</title>
<link rel="stylesheet" href="/admin/assets/status.css">
<link rel="icon" href="data:,">
<script src="/admin/assets/status.js" defer></script>
<noscript><meta http-equiv="refresh" content="10"></noscript>
</head><body>
<header><h1>mjbroker status</h1><div class="who">{who} {logout}</div>
<div id="offline" class="alert" hidden>Cannot reach the broker: showing the last figures.</div></header>
<main id="status">{render_main(snap, timezone)}</main>
<footer class="muted small">Refreshes every 5 s. JSON: <a href="/mj/admin/usage">/mj/admin/usage</a>,
<a href="/mj/account/list">/mj/account/list</a>, <a href="/mj/task/list">/mj/task/list</a>;
API: <a href="/schema">/schema</a>.</footer>
</body></html>
"""
