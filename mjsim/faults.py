"""Fault injection book: what goes wrong next, per account."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JOB_ERROR_KINDS", "FaultBook", "RateLimitFault"]

#: Error kinds a job can be made to fail with (see ``bots.errors``).
JOB_ERROR_KINDS = frozenset(
    {
        "banned_prompt",
        "invalid_parameter",
        "queue_full",
        "action_needed",
        "captcha",
        "subscription_expired",
        "subscription_required",
        "credits_exhausted",
        "invalid_link",
        "failed_to_process",
        "interaction_failed",
        "stopped",
        "no_response",
    }
)

#: Key used for faults that apply to every account.
ANY = "*"


@dataclass
class RateLimitFault:
    remaining: int
    retry_after: float
    global_: bool = False


@dataclass
class FaultBook:
    """Pending faults. Each ``take_*`` consumes one, so a fault hits exactly the next N uses."""

    job_errors: dict[str, deque[str]] = field(default_factory=dict)
    rate_limits: dict[str, RateLimitFault] = field(default_factory=dict)
    delete_mid_job: dict[str, int] = field(default_factory=dict)

    def fail_next_jobs(self, user_id: str, kind: str, count: int = 1) -> None:
        if kind not in JOB_ERROR_KINDS:
            raise ValueError(f'unknown error kind "{kind}"; known: {sorted(JOB_ERROR_KINDS)}')
        self.job_errors.setdefault(user_id, deque()).extend([kind] * count)

    def take_job_error(self, user_id: str) -> str | None:
        q = self.job_errors.get(user_id)
        return q.popleft() if q else None

    def rate_limit(self, user_id: str, count: int, retry_after: float, global_: bool = False) -> None:
        self.rate_limits[user_id] = RateLimitFault(count, retry_after, global_)

    def take_rate_limit(self, user_id: str) -> RateLimitFault | None:
        for key in (user_id, ANY):
            fault = self.rate_limits.get(key)
            if fault is not None and fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    del self.rate_limits[key]
                return fault
        return None

    def take_delete_mid_job(self, user_id: str) -> bool:
        n = self.delete_mid_job.get(user_id, 0)
        if n <= 0:
            return False
        self.delete_mid_job[user_id] = n - 1
        return True

    def clear(self, user_id: str | None = None) -> None:
        """Forget the pending faults of ``user_id``, or of everyone (``ANY`` ones included) when None."""
        books: tuple[dict[str, Any], ...] = (self.job_errors, self.rate_limits, self.delete_mid_job)
        for book in books:
            if user_id is None:
                book.clear()
            else:
                book.pop(user_id, None)
