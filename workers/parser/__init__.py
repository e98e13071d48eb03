"""Turn one Midjourney/Niji/InsightFace gateway dispatch into a `Change`: pure, no I/O, no clock.

`parse_event(event_type, data)` never raises and always returns a `Change`; anything it does not
understand is `kind="ignore"`. `data` is the dispatch's raw JSON (bytes, as the bridge forwards it) or
the decoded object; either is read into its typed wire shape (`broker.discord_types`) first, and a
payload that does not fit that shape is malformed and ``ignore``. One ``parse_<event>`` function per
dispatch type, collected in a table (`workers.parser.dispatch`).

Modules: `change` (the `Change` it returns), `dispatch` (`parse_event` and the table), `messages`
(bot messages and their components), `content` (the job line, the seed DM, hashes), `embeds`
(describe/shorten results, notices, errors), `interactions` (acks, failures, modals). Bot ids, event
names, speed-mode words and custom_id kinds come from `broker.discord`.

Kinds (the CLI vocabulary, `python -m workers.parse`):

- ``start``: the first bot message of a job: content status ``(Waiting to start)``, a legacy
  ``Upscaling image #N with **P**`` / ``Making variations for image #N with`` opener, a
  describe/shorten placeholder, or an in-progress (not Stopped) message that still carries the
  interaction `nonce` (only the first reply carries it, §4.4).
- ``progress``: an in-progress message: ``(N%)``, ``(paused)``, ``(Stopped)`` (`status_text` says
  which; "Stopped" ends the job, the worker decides), or ``(Waiting to start)`` seen on an edit.
- ``done``: a finished job posted as a NEW message (MESSAGE_CREATE) whose content has no status:
  imagine/reroll/blend grids, upscales, variations, zoom, pan; InsightFace image replies (swap face).
- ``describe`` / ``shorten``: result embeds; `prompts` holds the numbered prompts.
- ``error``: red/known-title embeds (§4.8), content starting ``Failed`` (e.g. "Failed to process
  your command"), INTERACTION_FAILURE, the captcha iframe modal (see below), and any other embed
  that answers our interaction (it carries the nonce) in place of a job, with the bot's own words;
  replies to account commands (``/info``, ``/settings``...) excepted. A bot message that names one
  of our jobs is never ``ignore`` (tests/fixtures/mj-message-forms.jsonl holds every known form).
- ``queued``: the ``Job queued`` embed (and its older title ``Your job will start shortly``), and a
  yellow warning embed answering our interaction: not a failure, keep waiting; `error` carries its
  text.
- ``modal``: INTERACTION_MODAL_CREATE and non-captcha INTERACTION_IFRAME_MODAL_CREATE (Vary Region).
- ``ignore``: everything else, often with useful fields still set (see choices below).

Choices the protocol leaves open, decided here:

- A MESSAGE_UPDATE whose content looks final is ``ignore`` (fields filled in): finals always arrive
  as a new message (§4.1 step 4); later edits of a finished message (button restyles after a
  click) must not finish a task twice. InsightFace replies are the exception: their lifecycle is
  undocumented (§3), so an image on CREATE or UPDATE is ``done``.
- ``done`` does not require an attachment: recorded finals are matched by content alone, and the
  worker decides what a result without an image means.
- The captcha iframe modal (title ``Action required to continue`` or an ``iframe_path`` under
  ``/captcha/``) is an ``error`` titled by the modal, not a ``modal``: no task can submit it, the
  account needs a human (T locks it, §4.8). Other iframe modals (Vary Region) are ``modal``.
- The ✉️ seed DM (``**Job ID**: <uuid>`` / ``**seed** <digits>``, §5.4) is ``ignore`` in the CLI
  vocabulary, with `seed` and `hash` (the job id) set for the worker that asked.
- INTERACTION_CREATE / INTERACTION_SUCCESS are ``ignore`` carrying `nonce` and `interaction_id`:
  the worker links the interaction id to its task (T matches later messages by it, §4.4).
- MESSAGE_DELETE is ``ignore`` with `message_id` set.
- Messages whose author is present but is not one of the three bots are ``ignore`` (our own upload
  messages, other users); a message without an author is parsed, to be lenient with partial events.
- A payload whose fields do not have their wire types (`broker.discord_types`: a number for a string,
  a string for a list...) is malformed and ``ignore`` as a whole, rather than read field by field;
  missing fields, nulls and unknown fields are fine. The first embed is read whenever there is one
  (even ``{}``: a decoded shape cannot tell it from an embed of fields we do not read).
- For modals, `custom_ids` is the modal's custom_id followed by its inputs' custom_ids; `prompt` is
  the first prefilled input value; `index`/`action`/`hash` come from the modal custom_id.
- A job message starts with ``**`` (or a legacy opener) and has `` - `` after the prompt; bold words
  inside other prose ("Done! **Fast mode** ...") are not a job.
- `hash` follows §4.3 on the attachment (or the describe embed image) with the query stripped; when
  that gives no full uuid, a uuid from the custom_ids that extends it wins (previews may carry a short
  id; buttons always carry the job uuid).

Actions: from the words between the prompt and the mention (§4.2): ``Image #N``/``Upscaled``/
``Upscaling`` -> UPSCALE, ``Variations``/``Remix`` -> VARIATION, ``Zoom Out`` -> ZOOM, ``Pan X`` -> PAN;
no words -> BLEND if the interaction is ``blend``, REROLL if it came from a button click
(interaction type 3), else IMAGINE. A final blend usually has no interaction and reads as IMAGINE:
the worker keeps its task's own action. Describe/shorten by embed or interaction name, SWAP_FACE by
the InsightFace author. `action` is a `broker.models.TaskAction`, `mode` a `SpeedMode` and `bot` a
`BotType`; the CLI prints `mode` as the bot's word (``fast``, ``relax``, ``turbo``).
"""

from __future__ import annotations

from workers.parser.change import Change, ErrorInfo, Kind
from workers.parser.content import extract_hash
from workers.parser.dispatch import parse_event

__all__ = ["Change", "ErrorInfo", "Kind", "extract_hash", "parse_event"]
