"""Error and notice embeds as the Midjourney bot sends them (titles and colours from real payloads)."""

from __future__ import annotations

from typing import Any

from mjsim.formats import COLOR_ERROR, COLOR_WARNING, error_embed

__all__ = ["JOB_QUEUED_DESCRIPTION", "error_for"]

Payload = dict[str, Any]

JOB_QUEUED_DESCRIPTION = (
    "You have reached the maximum allowed number of concurrent jobs. "
    "Don't worry, this job will start as soon as another one finishes!"
)


def error_for(kind: str, *, prompt: str, command: str = "imagine", detail: str = "") -> Payload:
    """The embed for an error ``kind`` (see ``faults.JOB_ERROR_KINDS``)."""
    footer = f"/{command} {prompt}" if prompt else None
    if kind == "banned_prompt":
        word = detail or "bannedword"
        return error_embed(
            "Banned prompt detected",
            f"The word `{word}` is banned. Circumventing this filter to violate our rules may result "
            "in your access being revoked.",
            footer=footer,
        )
    if kind == "invalid_parameter":
        return error_embed(
            "Invalid parameter", f"Unrecognized parameter(s): `{detail or '--foo'}`", footer=footer
        )
    if kind == "queue_full":
        return error_embed(
            "Queue full",
            "Your job queue is full. Please wait for a job to finish first, then resubmit this one.",
            color=None,
            footer=footer,
        )
    if kind == "job_queued":
        return error_embed("Job queued", JOB_QUEUED_DESCRIPTION, color=None, footer=footer)
    if kind == "action_needed":
        return error_embed(
            "Action needed to continue",
            "Sorry! Our AI moderators feel your prompt might be against our community standards.",
            footer=footer,
        )
    if kind == "subscription_expired":
        return error_embed(
            "Subscription expired",
            "Your subscription has expired. Renew it at https://www.midjourney.com/account to continue.",
            footer=footer,
        )
    if kind == "subscription_required":
        return error_embed(
            "Subscription required",
            "To use Midjourney you need an active subscription: https://www.midjourney.com/account",
            footer=footer,
        )
    if kind == "credits_exhausted":
        return error_embed(
            "Credits exhausted",
            "You have run out of fast hours. Use `/relax` or purchase more at https://www.midjourney.com/account",
            color=COLOR_WARNING,
            footer=footer,
        )
    if kind == "invalid_link":
        return error_embed(
            "Invalid link",
            "Sorry, this link is invalid. Please check it and try again.",
            footer=footer,
        )
    return error_embed("Invalid request", f"Something went wrong ({kind}).", color=COLOR_ERROR, footer=footer)
