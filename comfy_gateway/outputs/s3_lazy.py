"""S3Storage on demand: aioboto3 and botocore take a noticeable part of a second to import, so a
gateway loads them the first time a job uploads to S3, not when it starts."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, AsyncIterator

from ..net.guard import NetworkPolicy
from ..settings import Settings
from .s3_target import S3Target

if TYPE_CHECKING:
    from .s3 import S3Bucket
    from .s3 import S3Storage as _Real


class S3Storage:
    """The same `open(target)` as outputs.s3.S3Storage, which it builds on first use."""

    def __init__(self, settings: Settings, policy: NetworkPolicy):
        self._settings, self._policy = settings, policy
        self._real: "_Real | None" = None

    @asynccontextmanager
    async def open(self, target: S3Target) -> AsyncIterator["S3Bucket"]:
        if self._real is None:
            from .s3 import S3Storage as Real

            self._real = Real(self._settings, self._policy)
        async with self._real.open(target) as bucket:
            yield bucket
