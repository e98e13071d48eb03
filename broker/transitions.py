"""What every process says when a task changes status: one INFO line, and a count of the finished.

`broker.store` calls `announce` after each write that landed (whichever process made it: the web
creates and cancels, the bridge submits, the workers run tasks to their end), so a task's life
reads as a few lines across the processes' logs, after the web's access line of its submit
(``POST /mj/submit/imagine 200 code=1 task=1795820271812335 3.1ms``), e.g.::

    task 1795820271812335 IMAGINE account=a1: NOT_START -> SUBMITTED progress=-
    task 1795820271812335 IMAGINE account=a1: SUBMITTED -> IN_PROGRESS progress=33%
    task 1795820271812335 IMAGINE account=a1: IN_PROGRESS -> SUCCESS progress=100%

The creation (the access line says it) and progress within IN_PROGRESS (a job reports several
times) are logged at DEBUG only.
"""

from __future__ import annotations

import logging

from broker.metrics import Metrics
from broker.models import Task

__all__ = ["announce"]

log = logging.getLogger("broker.tasks")


def announce(old: Task | None, new: Task, metrics: Metrics | None) -> None:
    """Log `old` -> `new` when the status moved (DEBUG when only progress did); count a final one."""
    if old is None:
        # the submit's access line names it (code and task id); one more line per submit would
        # cost the submit path more than observing it may
        log.debug("task %s %s account=%s: new -> %s", new.id, new.action, new.instance_id, new.status)
        return
    if old.status == new.status:
        if old.progress != new.progress and log.isEnabledFor(logging.DEBUG):
            log.debug("task %s %s: progress %s", new.id, new.status, new.progress)
        return
    reason = f" reason={new.fail_reason[:200]!r}" if new.fail_reason else ""
    log.info(
        "task %s %s account=%s: %s -> %s progress=%s%s",
        new.id,
        new.action,
        new.instance_id or "-",
        old.status,
        new.status,
        new.progress or "-",
        reason,
    )
    if metrics is not None and new.status.is_terminal:
        metrics.finished.labels(new.action, new.status).inc()
