"""`images:` of config.yaml: the image store (`broker.image_store`) and the URLs written into tasks."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["ImageSettings", "S3Settings", "check_image_settings"]


class S3Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Any S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Backblaze B2, Ceph...)."""

    #: e.g. https://s3.eu-west-1.amazonaws.com, http://minio:9000; empty = AWS's own for `region`
    endpoint: str = ""
    bucket: str = ""
    region: str = "us-east-1"
    #: write the keys as ${ENV_VAR}; empty = the usual AWS variables / instance role
    access_key_id: str = ""
    secret_access_key: str = ""
    #: object names start with this ("mjbroker/" -> mjbroker/<task id>/image.png)
    prefix: str = ""
    #: http:// endpoints are refused unless this is true (a bucket on the LAN or in a test)
    allow_http: bool = False

    def __repr__(self) -> str:
        return f"S3Settings(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    __str__ = __repr__


class ImageSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Copies of finished images, served by the web at stable URLs (Discord's links expire).

    Off (`none`) unless the file says otherwise: the shipped config.yaml turns the local store on.
    """

    #: none: tasks keep Discord's URLs; local: files under `dir`; s3: the bucket of `s3`
    backend: Literal["none", "local", "s3"] = "none"
    dir: str = "var/images"
    #: the origin written into tasks' URLs (a reverse proxy or CDN in front of the web); empty =
    #: http://<server.host>:<server.port>
    public_base_url: str = ""
    #: bound of one task's copy (download, link refresh, split, upload); past it the task succeeds
    #: with Discord's URL and properties.imageStoreError says why
    copy_timeout_seconds: float = 30.0
    #: longest edge of thumbnailUrl's WebP, in pixels
    thumbnail_px: int = 256
    #: largest video file copied (a VIDEO / VIDEO_EXTEND result's mp4s; images are capped by
    #: tasks.max_image_bytes); a larger one leaves the task with Discord's URLs
    max_video_bytes: int = 64 * 1024 * 1024
    s3: S3Settings = S3Settings()

    @property
    def enabled(self) -> bool:
        return self.backend != "none"


def check_image_settings(images: ImageSettings) -> str | None:
    """What is wrong with `images` (a ConfigError's text), or None."""
    if images.copy_timeout_seconds <= 0:
        return "images.copy_timeout_seconds: must be positive"
    if not 16 <= images.thumbnail_px <= 2048:
        return "images.thumbnail_px: must be between 16 and 2048"
    if images.max_video_bytes <= 0:
        return "images.max_video_bytes: must be positive"
    if images.public_base_url and not images.public_base_url.startswith(("http://", "https://")):
        return "images.public_base_url: must start with http:// or https://"
    if images.backend == "s3" and not images.s3.bucket:
        return "images.s3.bucket: needed with backend s3"
    if images.backend == "s3" and images.s3.endpoint.startswith("http://") and not images.s3.allow_http:
        return "images.s3.endpoint: http:// needs images.s3.allow_http: true"
    return None
