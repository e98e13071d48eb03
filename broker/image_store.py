"""The image store: copies of finished images, written by the workers and served by the web.

One folder per task (`<task id>/`), the same names in every backend:

- ``image.<ext>``: the result as Discord served it (PNG, JPEG, WebP or GIF);
- ``1.<ext>`` .. ``4.<ext>``: the quarters of a grid (a single result has none);
- ``thumb.webp``: the thumbnail;
- ``video1.mp4`` .. ``videoN.mp4``: a video task's videos, in the bot's order (such a task has no
  image, quarters or thumbnail);
- ``manifest.json``: what the folder holds (names, types, sizes, ETags), written last: a task
  whose manifest is there is complete, and the web serves nothing of a task without one.

Backends: `LocalBackend` (a folder; default ``var/images``) and `S3Backend` (any S3-compatible
bucket through obstore, the Rust object_store crate's Python binding). Object names are built only
from a validated task id (`valid_task_id`) and the fixed names above, so no request can name a
path outside the store.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import msgspec
import obstore
from obstore.exceptions import NotFoundError

from broker.image_settings import ImageSettings

if TYPE_CHECKING:
    from obstore.store import S3Config

__all__ = [
    "ImageBackend",
    "ImageStore",
    "LocalBackend",
    "Manifest",
    "S3Backend",
    "StoredFile",
    "new_token",
    "open_store",
    "split_key",
    "store_key",
    "valid_task_id",
]

_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MANIFEST = "manifest.json"


def valid_task_id(task_id: str) -> bool:
    """Whether `task_id` may name a folder of the store (letters, digits, '_' and '-' only)."""
    return _TASK_ID.fullmatch(task_id) is not None


def new_token() -> str:
    """A fresh URL token: 96 random bits, URL-safe (letters, digits, '-' and '_'; never '.')."""
    return secrets.token_urlsafe(12)


def store_key(task_id: str, token: str) -> str:
    """The path segment that names a stored copy: ``<task id>.<token>``, or the bare id (no token)."""
    return f"{task_id}.{token}" if token else task_id


def split_key(key: str) -> tuple[str, str]:
    """(task id, token) of a path segment made by `store_key`."""
    task_id, _, token = key.partition(".")
    return task_id, token


class StoredFile(msgspec.Struct, frozen=True, kw_only=True):
    """One file of a task's folder."""

    name: str
    content_type: str
    size: int
    #: a strong ETag (quoted), from the bytes' digest
    etag: str


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """What a task's folder holds; written last, so its presence means the copy is complete."""

    #: the image as Discord served it; None for a video task
    image: StoredFile | None = None
    quarters: list[StoredFile] = msgspec.field(default_factory=list)
    thumbnail: StoredFile | None = None
    #: a video task's videos, in the bot's order
    videos: list[StoredFile] = msgspec.field(default_factory=list)
    stored_ms: int = 0
    #: the random part of the copy's URLs (`<task id>.<token>`): task ids are timestamps, so a URL
    #: of the bare id could be guessed. Empty in copies made before it existed: those are served
    #: at the bare id, as the URLs handed out for them say.
    token: str = ""

    def part(self, which: str) -> StoredFile | None:
        """The file of part "" (the image), "1".."4" (a quarter) or "thumbnail"; None if there is none."""
        if which == "":
            return self.image
        if which == "thumbnail":
            return self.thumbnail
        if which in ("1", "2", "3", "4") and len(self.quarters) == 4:
            return self.quarters[int(which) - 1]
        return None

    def video(self, which: str) -> StoredFile | None:
        """The video of part "" (the first) or "1".."N" (the nth, as U1..UN number them); None if none."""
        if not self.videos:
            return None
        if which == "":
            return self.videos[0]
        numbers = [str(n) for n in range(1, len(self.videos) + 1)]
        return self.videos[numbers.index(which)] if which in numbers else None


class ImageBackend(Protocol):
    """Where the files are: object names are ``<task id>/<name>``."""

    async def put(self, name: str, data: bytes, content_type: str) -> None: ...

    async def put_all(self, files: list[tuple[str, bytes, str]]) -> None:
        """Write (name, data, content type) of each file; the last only once all others are written."""
        ...

    async def get(self, name: str) -> bytes | None: ...

    async def get_range(self, name: str, start: int, end: int) -> bytes | None:
        """Bytes `start` to `end` (exclusive) of the file; None when there is no such file."""
        ...

    async def delete_folder(self, task_id: str) -> None: ...

    async def close(self) -> None: ...


class LocalBackend:
    """A folder on this host (or a shared volume): ``<root>/<last 2 digits>/<task id>/<name>``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, name: str) -> Path:
        task_id, _, file = name.partition("/")
        if not valid_task_id(task_id) or not re.fullmatch(r"[a-z0-9]+(\.[a-z0-9]+)?", file):
            raise ValueError("not an image store name")
        return self.root / task_id[-2:] / task_id / file

    async def put(self, name: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, self._path(name), data)

    async def put_all(self, files: list[tuple[str, bytes, str]]) -> None:
        # one thread hop for the whole copy: a hop each cost ~8 of them on the SUCCESS hook's path
        paths = [(self._path(name), data) for name, data, _ in files]
        await asyncio.to_thread(self._write_all, paths)

    @classmethod
    def _write_all(cls, paths: list[tuple[Path, bytes]]) -> None:
        for path, data in paths:
            cls._write(path, data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a reader sees the whole file or none: written aside, then renamed over
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    async def get(self, name: str) -> bytes | None:
        path = self._path(name)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, NotADirectoryError):
            return None

    async def get_range(self, name: str, start: int, end: int) -> bytes | None:
        path = self._path(name)
        try:
            return await asyncio.to_thread(self._read_range, path, start, end)
        except (FileNotFoundError, NotADirectoryError):
            return None

    @staticmethod
    def _read_range(path: Path, start: int, end: int) -> bytes:
        with path.open("rb") as file:
            file.seek(start)
            return file.read(end - start)

    async def delete_folder(self, task_id: str) -> None:
        if not valid_task_id(task_id):
            return
        folder = self.root / task_id[-2:] / task_id
        # the manifest first: a folder half deleted is never served
        await asyncio.to_thread((folder / MANIFEST).unlink, True)
        await asyncio.to_thread(shutil.rmtree, folder, True)

    async def close(self) -> None:
        return None


class S3Backend:
    """Any S3-compatible bucket, through obstore (keys from `images.s3`, else the environment's)."""

    def __init__(self, settings: ImageSettings) -> None:
        from obstore.store import S3Store

        s3 = settings.s3
        config: S3Config = {"region": s3.region, "virtual_hosted_style_request": False}
        if s3.endpoint:
            config["endpoint"] = s3.endpoint
        if s3.access_key_id:
            config["access_key_id"] = s3.access_key_id
            config["secret_access_key"] = s3.secret_access_key
        self.store = S3Store(
            s3.bucket,
            prefix=s3.prefix.strip("/") or None,
            config=config,
            client_options={"allow_http": s3.allow_http},
        )

    async def put(self, name: str, data: bytes, content_type: str) -> None:
        await obstore.put_async(self.store, name, data, attributes={"Content-Type": content_type})

    async def put_all(self, files: list[tuple[str, bytes, str]]) -> None:
        *first, last = files
        await asyncio.gather(*(self.put(*file) for file in first))
        await self.put(*last)

    async def get(self, name: str) -> bytes | None:
        try:
            result = await obstore.get_async(self.store, name)
            return bytes(await result.bytes_async())
        except (NotFoundError, FileNotFoundError):
            return None

    async def get_range(self, name: str, start: int, end: int) -> bytes | None:
        try:
            return bytes(await obstore.get_range_async(self.store, name, start=start, end=end))
        except (NotFoundError, FileNotFoundError):
            return None

    async def delete_folder(self, task_id: str) -> None:
        if not valid_task_id(task_id):
            return
        names: list[str] = []
        async for batch in obstore.list(self.store, f"{task_id}/"):
            names += [entry["path"] for entry in batch]
        manifest = f"{task_id}/{MANIFEST}"
        if manifest in names:  # first: a folder half deleted is never served
            await obstore.delete_async(self.store, manifest)
            names.remove(manifest)
        if names:
            await obstore.delete_async(self.store, names)

    async def close(self) -> None:
        return None


_manifest_decoder = msgspec.json.Decoder(Manifest)


class ImageStore:
    """Reads and writes task folders; manifests are cached (a stored copy never changes).

    :param backend: where the files are.
    :param cached_manifests: how many manifests the web keeps in memory.
    """

    def __init__(self, backend: ImageBackend, *, cached_manifests: int = 4096) -> None:
        self.backend = backend
        self._cache: OrderedDict[str, Manifest] = OrderedDict()
        self._cache_size = cached_manifests

    async def save(self, task_id: str, files: list[tuple[StoredFile, bytes]], manifest: Manifest) -> None:
        """Write the files, then the manifest (the mark of a complete copy)."""
        named = [(f"{task_id}/{f.name}", data, f.content_type) for f, data in files]
        named.append((f"{task_id}/{MANIFEST}", msgspec.json.encode(manifest), "application/json"))
        await self.backend.put_all(named)

    async def manifest(self, task_id: str) -> Manifest | None:
        """The task's manifest, or None when the task has no complete copy (or the id is not one)."""
        if not valid_task_id(task_id):
            return None
        cached = self._cache.get(task_id)
        if cached is not None:
            self._cache.move_to_end(task_id)
            return cached
        raw = await self.backend.get(f"{task_id}/{MANIFEST}")
        if raw is None:
            return None
        try:
            found = _manifest_decoder.decode(raw)
        except msgspec.DecodeError:
            return None
        self._cache[task_id] = found
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return found

    async def read(self, task_id: str, file: StoredFile) -> bytes | None:
        data = await self.backend.get(f"{task_id}/{file.name}")
        if data is None:
            self._cache.pop(task_id, None)  # deleted meanwhile (retention)
        return data

    async def read_range(self, task_id: str, file: StoredFile, start: int, end: int) -> bytes | None:
        """Bytes `start` to `end` (exclusive) of a stored file (a video a player seeks in)."""
        data = await self.backend.get_range(f"{task_id}/{file.name}", start, end)
        if data is None:
            self._cache.pop(task_id, None)
        return data

    async def delete(self, task_id: str) -> None:
        """Delete the task's folder (manifest first, so a half-deleted copy is never served)."""
        self._cache.pop(task_id, None)
        await self.backend.delete_folder(task_id)

    async def close(self) -> None:
        await self.backend.close()


def open_store(settings: ImageSettings) -> ImageStore | None:
    """The store `images` configures, or None when `images.backend` is none."""
    if settings.backend == "local":
        return ImageStore(LocalBackend(settings.dir))
    if settings.backend == "s3":
        return ImageStore(S3Backend(settings))
    return None
