"""Outputs to S3 (or any S3-compatible store), uploaded with aioboto3.

Each file is streamed from its local copy: up to S3_PART_SIZE in one PUT, past it a multipart
upload whose parts are read one at a time, so memory stays a few parts whatever the file size.
Retries are botocore's own (standard mode, S3_RETRIES), so they are bounded and only hit what
can pass on a second try (connection errors, throttling, 5xx); a missing bucket or refused
credentials fail at once.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import quote

import aioboto3
import aiofiles
from aiobotocore.config import AioConfig
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from ..net.guard import GuardedResolver, NetworkPolicy, UrlRefused
from ..net.precheck import precheck_url
from ..settings import Settings
from .errors import StorageError, redact
from .s3_target import S3Target

# Their debug lines carry signed request headers (the access key id among them): never that
# chatty, whatever API_LOG_LEVEL says.
for _name in ("botocore", "aiobotocore", "aioboto3", "boto3", "s3transfer"):
    logging.getLogger(_name).setLevel(max(logging.getLogger(_name).level, logging.INFO))

# What a client can do about the usual refusals, added to the store's own message.
HINTS = {
    "NoSuchBucket": " (create the bucket, or check bucket_name and region)",
    "InvalidAccessKeyId": " (check access_key_id)",
    "SignatureDoesNotMatch": " (check secret_access_key)",
    "AccessDenied": " (the credentials may not write to this bucket)",
}


class S3Storage:
    def __init__(self, settings: Settings, policy: NetworkPolicy):
        self._settings = settings
        self._policy = policy
        self._session = aioboto3.Session()
        part = settings.s3_part_size
        # One part read ahead while two upload: about 4 parts in memory at most per file.
        self._transfer = TransferConfig(multipart_threshold=part, multipart_chunksize=part,
                                        max_concurrency=2, max_io_queue=1, io_chunksize=1024 * 1024)

    @asynccontextmanager
    async def open(self, target: S3Target) -> AsyncIterator["S3Bucket"]:
        s = self._settings
        connector_args: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        if target.client_named:
            try:
                await precheck_url(target.endpoint_url or _aws_endpoint(target.region), self._policy,
                                   what="s3.endpoint_url")
            except UrlRefused as exc:
                raise StorageError("endpoint_refused", f"S3 endpoint refused: {exc}") from None
            # Enforced where names resolve; env proxies ignored (a proxy would connect for us).
            connector_args["resolver"] = GuardedResolver(self._policy)
            extra["proxies"] = {}
        config = AioConfig(
            signature_version="s3v4", region_name=target.region,
            retries={"mode": "standard", "max_attempts": 1 + s.s3_retries},
            connect_timeout=s.s3_timeout, read_timeout=s.s3_timeout,
            s3={"addressing_style": s.s3_addressing_style},
            connector_args=connector_args or None, **extra,
        )
        async with AsyncExitStack() as stack:
            try:
                client = await stack.enter_async_context(self._session.client(
                    "s3", endpoint_url=target.endpoint_url, region_name=target.region,
                    aws_access_key_id=target.access_key_id, aws_secret_access_key=target.secret_access_key,
                    config=config))
            except Exception as exc:  # noqa: BLE001 - e.g. a malformed endpoint
                raise storage_error(exc, target, None, "connect") from None
            public = "" if target.client_named else s.s3_public_base_url
            yield S3Bucket(client, target, s.s3_prefix, public, s.s3_url_expiry, self._transfer)


class S3Bucket:
    """One open client on one bucket, for the outputs of one job."""

    def __init__(self, client: Any, target: S3Target, prefix: str, public_base: str, expiry: int,
                 transfer: TransferConfig):
        self._client, self.target = client, target
        self._prefix, self._public, self._expiry, self._transfer = prefix, public_base, expiry, transfer

    def key_for(self, job_id: str, rel: str) -> str:
        return "/".join(p for p in (self._prefix, job_id, rel) if p)

    async def upload(self, path: Path, key: str, content_type: str | None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        try:
            async with aiofiles.open(path, "rb") as fh:
                await self._client.upload_fileobj(fh, self.target.bucket, key, ExtraArgs=extra,
                                                  Config=self._transfer)
        except Exception as exc:  # noqa: BLE001 - every failure becomes the job's storage error
            raise storage_error(exc, self.target, key, "upload") from None

    async def url_for(self, key: str) -> str:
        if self._public:
            return f"{self._public}/{quote(key)}"
        try:
            return await self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.target.bucket, "Key": key}, ExpiresIn=self._expiry)
        except Exception as exc:  # noqa: BLE001
            raise storage_error(exc, self.target, key, "presign") from None


def _aws_endpoint(region: str | None) -> str:
    return f"https://s3.{region}.amazonaws.com" if region else "https://s3.amazonaws.com"


def storage_error(exc: BaseException, target: S3Target, key: str | None, op: str) -> StorageError:
    where = f"s3://{target.bucket}/{key}" if key else f"bucket {target.bucket!r}"
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ClientError):
        err = exc.response.get("Error") or {}
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = str(err.get("Code") or status or "ClientError")
        text = f"S3 {op} to {where} failed: {code}: {err.get('Message') or 'no message'}{HINTS.get(code, '')}"
    elif isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)):
        code = "endpoint_unreachable"
        text = f"S3 {op} to {where} failed: the endpoint did not answer: {exc}"
    elif isinstance(exc, NoCredentialsError):
        code = "no_credentials"
        text = f"S3 {op} to {where} failed: no credentials (set S3_ACCESS_KEY_ID/S3_SECRET_ACCESS_KEY)"
    elif isinstance(exc, BotoCoreError):
        code = "s3_error"
        text = f"S3 {op} to {where} failed: {exc}"
    else:
        code = "s3_error"
        text = f"S3 {op} to {where} failed: {type(exc).__name__}: {exc}"
    return StorageError(code, redact(text, target.secrets), {"bucket": target.bucket, "key": key})
