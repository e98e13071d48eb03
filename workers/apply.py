"""Apply one gateway event to its task: parse, match, then write through `TaskStore.update` only.

Each change kind has one ``handle_<kind>`` method, collected into a table at start-up (as
discord.py collects ``parse_<event>``). Every mutation is idempotent and monotonic, so duplicated or
reordered events give the same final state:

- a terminal task takes no further change (the mutate returns None), except its seed;
- progress never goes back (the store keeps the higher value, and we keep the newer preview);
- ``start`` binds the progress message and sets ``"0%"``; the first ``(N%)`` moves SUBMITTED ->
  IN_PROGRESS with the preview as ``imageUrl``;
- ``mode`` is the speed mode the bot reports (``(fast)``, ``(relaxed)``, ``(turbo)``), kept from the
  latest message that names one;
- ``done`` / ``describe`` / ``shorten`` -> SUCCESS with image, buttons and properties (or IN_PROGRESS
  at 100% with ``properties.finishing`` when `workers.finishing` has steps to run first); ``error`` ->
  FAILURE with ``failReason = "[<title>] <description>"`` (through `TaskStore.fail`, the one way a
  task fails); ``queued`` changes nothing;
- a MESSAGE_DELETE of a running task's progress message records when (``messageDeletedTime``, a
  quiet write), so that a timeout can say the message was deleted (real Midjourney deletes the
  progress message just before it posts the result: the deletion alone fails nothing);
- a ``(Stopped)`` job fails: with failReason ``cancelled`` when a client asked to cancel it
  (``properties.cancelRequestedTime``, `/mj/task/{id}/cancel`), else ``[Stopped] ...``; the "Cancel
  Job" custom_id on a running job's message is recorded (``properties.cancelCustomId``) for that;
- ``modal`` records the bot's modal custom_id (NOT_START -> MODAL; a SUBMITTED task stays, the
  state machine never goes back);
- every ``error`` (and the captcha modal) is also reported to the account's health module as an
  `AccountFact`: what it means for the account (a pause, a ban...) is the bridge's call, not ours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
import redis.asyncio as aioredis

from broker import keys
from broker.account_status import AccountFact, report_fact
from broker.clock import Clock
from broker.discord import MESSAGE_DELETE, ButtonKind, parse_custom_id
from broker.events import GatewayEvent
from broker.models import Task, TaskProperties, TaskStatus, VideoUrl
from broker.store import InvalidTransition, TaskStore, Update, failing
from workers.latency import EventTimes
from workers.matching import Match, Matcher
from workers.parser import Change, parse_event

__all__ = ["CANCELLED", "Applier", "Outcome", "account_fact"]

log = logging.getLogger(__name__)

S = TaskStatus
replace = msgspec.structs.replace

_CAPTCHA_EVENT = "INTERACTION_IFRAME_MODAL_CREATE"
_RUNNING = (S.SUBMITTED, S.IN_PROGRESS)
#: length cap of each shard's finishing stream
_FINISHING_MAXLEN = 100_000 // keys.SHARDS


class Outcome(msgspec.Struct, frozen=True):
    """What applying one event did: the change kind, the task (if matched) and whether it changed."""

    kind: str
    task_id: str | None = None
    changed: bool = False
    matched_by: str | None = None
    #: the event was about a job but no task was found
    unmatched: bool = False


#: a task edit: the new task, or None to leave it as it is (see `TaskStore.update`)
Mutate = Callable[[Task], Task | None]
#: what one change kind does to its task, or None when it does nothing
Handler = Callable[[Change, GatewayEvent], Mutate | None]


class Applier:
    """Turns gateway events into task writes.

    :param store: the only writer of task records.
    :param matcher: finds the task of a change.
    :param clock: epoch milliseconds (finishTime, startTime).
    :param event_times: where the revisions events made are noted, for the event-to-hook latency.
    """

    def __init__(
        self,
        store: TaskStore,
        matcher: Matcher,
        *,
        clock: Clock,
        finishing_of: Callable[[Task], str | None] = lambda _: None,
        event_times: EventTimes | None = None,
    ) -> None:
        self.store = store
        self.event_times = event_times
        self.redis: aioredis.Redis = store.redis
        self.matcher = matcher
        self.clock = clock
        #: the steps a result needs before SUCCESS (`workers.finishing`), given the task as it
        #: would be at SUCCESS; None = none
        self.finishing_of = finishing_of
        self.handlers: dict[str, Handler] = {
            name.removeprefix("handle_"): getattr(self, name)
            for name in dir(self)
            if name.startswith("handle_")
        }

    async def apply(self, event: GatewayEvent, *, last_try: bool = True) -> Outcome:
        """Parse, match and apply one event; never raises for bad input or late events.

        With ``last_try=False`` only ids match (nonce, message, interaction) and an event that
        matches no task is not counted as unmatched: the caller tries it again, with every key, once
        the events that may bind its task (applied concurrently) are done.
        """
        change = parse_event(event.t, event.d)
        if change.kind == "ignore" and not _worth_matching(change):
            return Outcome("ignore")
        found = await self.matcher.match(event.account, change, weak=last_try)
        fact = account_fact(change, at_ms=event.at, task_id=found.task.id if found else None)
        if fact is not None and (found is not None or last_try):
            await report_fact(self.redis, event.account, fact)
        if found is None:
            if change.kind != "ignore" and last_try:
                await self.matcher.count_unmatched(event.account, change)
            return Outcome(change.kind, unmatched=True)
        log.debug(
            "%s %s (message %s) -> task %s by %s",
            event.t,
            change.kind,
            change.message_id,
            found.task.id,
            found.by,
        )
        mutate = self.handlers[change.kind](change, event)
        bind = [pair for pair in _index_pairs(found, change) if not self.matcher.knows(pair, found.task.id)]
        update: Update | None = None
        if mutate is None:
            await self.store.index_many(bind, found.task.id)
        else:
            try:
                update = await self.store.update(found.task.id, mutate, current=found.task, index=bind)
            except InvalidTransition as exc:
                # A late event for a task that moved on (e.g. NOT_START/MODAL, or finished elsewhere).
                log.debug("late %s event for task %s: %s", change.kind, found.task.id, exc)
        latest = update.task if update else found.task
        self.matcher.remember(latest, bind)
        if update is not None and update.changed and update.task is not None and self.event_times is not None:
            old, new = found.task, update.task
            if (old.status, old.progress, old.image_url) != (new.status, new.progress, new.image_url):
                self.event_times.note(new.id, new.revision, event.at)  # a write a hook will carry
        if latest is not None and latest.properties.finishing and latest.status in _RUNNING:
            # again on a replayed event too: the entry may have died between the write and this
            await self.redis.xadd(
                keys.finishing_stream(latest.id),
                {"id": latest.id},
                maxlen=_FINISHING_MAXLEN,
                approximate=True,
            )
        return Outcome(
            change.kind,
            task_id=found.task.id,
            changed=bool(update and update.changed),
            matched_by=found.by,
        )

    # -- handlers, one per change kind ----------------------------------------------------------

    def handle_start(self, change: Change, event: GatewayEvent) -> Mutate | None:
        if change.progress is not None:
            return self.handle_progress(change, event)
        now = self.clock()
        cancel_id = _cancel_button(change)

        def mutate(t: Task) -> Task | None:
            if t.status not in _RUNNING:
                return None
            props = t.properties
            props = replace(
                props,
                progress_message_id=props.progress_message_id or change.message_id,
                final_prompt=props.final_prompt or change.prompt,
                flags=props.flags if props.flags is not None else change.message_flags,
                cancel_custom_id=props.cancel_custom_id or cancel_id,
            )
            return replace(
                t,
                properties=props,
                progress=t.progress or "0%",
                start_time=t.start_time or now,
                mode=change.mode or t.mode,
            )

        return mutate

    def handle_progress(self, change: Change, event: GatewayEvent) -> Mutate | None:
        now = self.clock()
        if change.status_text == "Stopped":
            return _stopped(now)
        percent = change.progress
        cancel_id = _cancel_button(change)

        def mutate(t: Task) -> Task | None:
            if t.status not in _RUNNING:
                return None
            props = replace(
                t.properties,
                progress_message_id=t.properties.progress_message_id or change.message_id,
                final_prompt=t.properties.final_prompt or change.prompt,
                cancel_custom_id=t.properties.cancel_custom_id or cancel_id,
            )
            if percent is None:  # waiting / paused: nothing moves
                return replace(t, properties=props, mode=change.mode or t.mode)
            newer = t.status == S.SUBMITTED or percent >= t.progress_percent
            return replace(
                t,
                status=S.IN_PROGRESS,
                properties=props,
                progress=f"{percent}%" if newer else t.progress,
                image_url=(change.image_url or t.image_url) if newer else t.image_url,
                start_time=t.start_time or now,
                mode=change.mode or t.mode,
            )

        return mutate

    def handle_done(self, change: Change, event: GatewayEvent) -> Mutate | None:
        return self._succeed(change, event, final_prompt=change.prompt)

    def handle_describe(self, change: Change, event: GatewayEvent) -> Mutate | None:
        text = change.embed_description or "\n".join(change.prompts)
        return self._succeed(change, event, final_prompt=text)

    def handle_shorten(self, change: Change, event: GatewayEvent) -> Mutate | None:
        text = change.embed_description or "\n".join(change.prompts)
        return self._succeed(change, event, final_prompt=text, keep_image=True)

    def handle_error(self, change: Change, event: GatewayEvent) -> Mutate | None:
        return failing(_fail_reason(change, event.account), now=self.clock())

    def handle_queued(self, change: Change, event: GatewayEvent) -> Mutate | None:
        # "Job queued" on Midjourney's side: not a failure, the task keeps waiting for its start.
        return None

    def handle_modal(self, change: Change, event: GatewayEvent) -> Mutate | None:
        def mutate(t: Task) -> Task | None:
            if t.status.is_terminal or t.status == S.IN_PROGRESS:
                return None
            props = replace(
                t.properties,
                modal_custom_id=change.modal_custom_id or t.properties.modal_custom_id,
                interaction_id=change.interaction_id or t.properties.interaction_id,
            )
            # The bridge submits modals it knows the prompt of; only a task not yet sent parks.
            status = S.MODAL if t.status == S.NOT_START else t.status
            return replace(t, status=status, properties=props)

        return mutate

    def handle_ignore(self, change: Change, event: GatewayEvent) -> Mutate | None:
        if change.event == MESSAGE_DELETE:
            return self._deleted(change)
        seed = change.seed
        if seed is None:
            return None  # an interaction ack: `_bind` already indexed its id

        def mutate(t: Task) -> Task | None:
            return None if t.seed == seed else replace(t, seed=seed)

        return mutate

    def _deleted(self, change: Change) -> Mutate:
        now = self.clock()

        def mutate(t: Task) -> Task | None:
            props = t.properties
            if (
                t.status not in _RUNNING
                or props.progress_message_id != change.message_id
                or props.message_deleted_time is not None
            ):
                return None
            return replace(t, properties=replace(props, message_deleted_time=now))

        return mutate

    # -- shared steps ---------------------------------------------------------------------------

    def _succeed(
        self,
        change: Change,
        event: GatewayEvent,
        *,
        final_prompt: str | None,
        keep_image: bool = False,
    ) -> Mutate:
        """The task's result is in: SUCCESS, or first the steps of `workers.finishing` it needs."""
        now = self.clock()

        def mutate(t: Task) -> Task | None:
            if t.status not in _RUNNING:
                return None
            props: TaskProperties = t.properties
            props = replace(
                props,
                final_prompt=final_prompt or props.final_prompt,
                message_id=change.message_id or props.message_id,
                message_hash=change.hash or props.message_hash,
                flags=change.message_flags if change.message_flags is not None else props.flags,
                progress_message_id=props.progress_message_id or change.message_id,
                message_content=change.content or props.message_content,
                discord_instance_id=props.discord_instance_id or change.channel_id or event.account,
            )
            image = t.image_url if keep_image else (change.image_url or t.image_url)
            videos = change.video_urls
            done = replace(
                t,
                status=S.SUCCESS,
                progress="100%",
                image_url=image,
                buttons=change.buttons or t.buttons,
                properties=props,
                start_time=t.start_time or now,
                finish_time=now,
                # what the bot said; a result that names no mode (U1-U4) ran in the mode asked for,
                # which the bridge ensured (flag or account switch)
                mode=change.mode or t.mode or t.request_mode,
                video_url=videos[0] if videos else t.video_url,
                video_urls=[VideoUrl(url=u) for u in videos] if videos else t.video_urls,
            )
            step = self.finishing_of(done)
            if step is None:
                return done
            return replace(
                done, status=S.IN_PROGRESS, properties=replace(props, finishing=step), finish_time=None
            )

        return mutate


def account_fact(change: Change, *, at_ms: int, task_id: str | None) -> AccountFact | None:
    """What the bridge's health module hears of an error the bot reported (pure); None if no error."""
    if change.kind != "error":
        return None
    error = change.error
    return AccountFact(
        kind="captcha" if change.event == _CAPTCHA_EVENT else "notice",
        title=error.title if error else "Error",
        description=error.description if error else "",
        task_id=task_id,
        at_ms=at_ms,
    )


def _index_pairs(found: Match, change: Change) -> list[tuple[str, str]]:
    """The Discord ids this event revealed, to index so that the job's later events match directly."""
    pairs: list[tuple[str, str]] = []
    if change.message_id and change.kind in ("start", "progress", "done", "describe", "shorten"):
        pairs.append(("message", change.message_id))
    if change.interaction_id:
        pairs.append(("interaction", change.interaction_id))
    if change.hash and change.kind in ("done", "describe"):
        pairs.append(("hash", change.hash))
    return [(kind, value) for kind, value in pairs if found.by != kind]


def _worth_matching(change: Change) -> bool:
    # Interaction acks (nonce <-> interaction id) and the seed DM are "ignore" but carry a link.
    # INTERACTION_CREATE only repeats what INTERACTION_SUCCESS says (and a failure needs neither).
    # A deleted message may be a running job's progress message (see `Applier._deleted`).
    if change.event == "INTERACTION_CREATE":
        return False
    if change.event == MESSAGE_DELETE:
        return change.message_id is not None
    return change.seed is not None or bool(change.nonce and change.interaction_id)


# ---- cancelling a running job (issue 12) ----

#: the failReason of a job stopped on Discord at a client's request (`/mj/task/{id}/cancel`)
CANCELLED = "cancelled"


def _cancel_button(change: Change) -> str | None:
    """The "Cancel Job" custom_id on a running job's message, if the bot put one there."""
    for custom_id in change.custom_ids:
        parsed = parse_custom_id(custom_id)
        if parsed is not None and parsed.kind is ButtonKind.CANCEL_JOB:
            return custom_id
    return None


def _stopped(now: int) -> Mutate:
    """A "(Stopped)" job fails: "cancelled" when a client asked for it, else the bot's own word."""

    def mutate(t: Task) -> Task | None:
        asked = t.properties.cancel_requested_time is not None
        reason = CANCELLED if asked else "[Stopped] Midjourney stopped the job"
        return failing(reason, now=now)(t)

    return mutate


def _fail_reason(change: Change, account: str) -> str:
    if change.event == _CAPTCHA_EVENT:
        return (
            f"[Action required to continue] account {account} must pass a Discord captcha; "
            "a human has to solve it before the account can run jobs again"
        )
    title = change.error.title if change.error else "Error"
    description = change.error.description if change.error else ""
    return f"[{title}] {description}".strip()
