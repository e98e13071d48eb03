"""The typed gateway payloads (`broker.discord_types`): what they accept and what they refuse."""

from __future__ import annotations

import msgspec
import pytest

from broker.discord import MIDJOURNEY_ID, NIJI_ID
from broker.discord_types import Message, ModalCreate, Ready


def test_ready_reads_the_user_and_both_shapes_of_dm_recipients() -> None:
    raw = (
        b'{"v": 9, "session_id": "s", "user": {"id": "7", "username": "me", "bot": false},'
        b' "guilds": [{"id": "1"}], "private_channels": ['
        b'{"id": "50", "type": 1, "recipient_ids": ["936929561302675456"]},'
        b'{"id": "51", "type": 1, "recipients": [{"id": "1022952195194359889", "username": "niji"}]}]}'
    )
    ready = msgspec.json.decode(raw, type=Ready)
    assert ready.user is not None and ready.user.id == "7"
    channels = ready.private_channels or []
    assert [c.recipient_ids for c in channels] == [[MIDJOURNEY_ID], None]
    assert [r.id for r in channels[1].recipients or []] == [NIJI_ID]


def test_message_nonce_is_str_or_int_and_ids_are_strings() -> None:
    assert msgspec.json.decode(b'{"nonce": 12}', type=Message).nonce == 12
    assert msgspec.json.decode(b'{"nonce": "12"}', type=Message).nonce == "12"
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"id": 12}', type=Message)


def test_modal_components_nest_and_keep_their_values() -> None:
    modal = msgspec.convert(
        {
            "components": [
                {"type": 1, "components": [{"type": 4, "custom_id": "MJ::PanModal::prompt", "value": "x"}]}
            ]
        },
        ModalCreate,
    )
    row = (modal.components or [])[0]
    assert [(c.custom_id, c.value) for c in row.components or []] == [("MJ::PanModal::prompt", "x")]
