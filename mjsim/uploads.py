"""Files that arrive with requests: multipart bodies, cloud-upload slots, and attachments that name them.

A client attaches a file either inline (multipart ``files[n]``) or by first asking for an upload slot,
PUTting the bytes there, and then naming the slot's ``upload_filename`` in the attachment.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

import msgspec
from aiohttp import BodyPartReader, web

from mjsim.state import SimState

__all__ = ["Files", "attached_blob", "new_upload_slot", "read_body"]

log = logging.getLogger(__name__)

Payload = dict[str, Any]

#: Inline files of a multipart body: ``n`` of ``files[n]`` -> (filename, bytes).
Files = dict[int, tuple[str, bytes]]


async def read_body(request: web.Request) -> tuple[Any, Files]:
    """A Discord request body: JSON, or multipart with `payload_json` and `files[n]` parts.

    Raises msgspec.DecodeError / ValueError on a body that is not what it claims to be.
    """
    files: Files = {}
    if not request.content_type.startswith("multipart/"):
        return msgspec.json.decode(await request.read()), files
    payload: Any = {}
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            continue
        name = part.name or ""
        data = await part.read()
        if name == "payload_json":
            payload = msgspec.json.decode(data)
        elif name.startswith("files["):
            files[int(name[6:-1])] = (part.filename or "file", bytes(data))
    return payload, files


def attached_blob(state: SimState, attachment: Payload, files: Files, default_id: Any) -> bytes | None:
    """The bytes an attachment object names: an uploaded slot, else the inline file with its ``id``.

    None when the slot is unknown; an inline file that is missing reads as empty.
    """
    uploaded = attachment.get("uploaded_filename")
    if uploaded:
        return state.uploads.get(str(uploaded))
    return files.get(int(str(attachment.get("id", default_id))), ("", b""))[1]


def new_upload_slot(state: SimState, file: Payload) -> Payload:
    """An upload slot for one entry of POST /channels/{id}/attachments (the PUT target is ours)."""
    upload_id = state.ids.hex(24)
    name = f"{state.ids.uuid4()}/{file.get('filename', 'file')}"
    state.pending_uploads[upload_id] = name
    url = f"{state.base_url}/upload/{urllib.parse.quote(name)}?upload_id={upload_id}"
    return {"id": int(file.get("id", 0)), "upload_url": url, "upload_filename": name}
