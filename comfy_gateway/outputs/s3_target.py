"""Where one job's outputs go on S3: a module of its own so that naming a target (every job
plans its outputs) never imports aioboto3, which only a gateway that uploads pays for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..settings import Settings


@dataclass(frozen=True)
class S3Target:
    """Where one job's outputs go. `client_named`: named by the client, so its endpoint goes
    through the address guard and its URLs are always presigned (the operator's public base
    URL belongs to the operator's bucket)."""

    bucket: str
    region: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    client_named: bool = False

    @property
    def secrets(self) -> tuple[str | None, str | None]:
        return self.access_key_id, self.secret_access_key

    @classmethod
    def from_settings(cls, s: Settings) -> "S3Target | None":
        if not s.s3_bucket_name:
            return None
        return cls(bucket=s.s3_bucket_name, region=s.s3_region or None, endpoint_url=s.s3_endpoint_url or None,
                   access_key_id=s.s3_access_key_id or None,
                   secret_access_key=s.s3_secret_access_key.get_secret_value() or None)

    @classmethod
    def from_request(cls, cfg: dict[str, Any], reveal: Callable[[str], str]) -> "S3Target":
        """`cfg` is the request's stored `s3`, credentials sealed; `reveal` opens them."""
        return cls(bucket=cfg["bucket_name"], region=cfg.get("region") or None,
                   endpoint_url=(cfg.get("endpoint_url") or "").rstrip("/") or None,
                   access_key_id=reveal(cfg["access_key_id"]),
                   secret_access_key=reveal(cfg["secret_access_key"]), client_named=True)
