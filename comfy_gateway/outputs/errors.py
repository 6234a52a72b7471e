"""The storage error a job fails with, and scrubbing secrets out of any text shown to anyone."""

from __future__ import annotations

from typing import Any, Iterable


class StorageError(Exception):
    """Uploading an output failed. `type` is the store's own code when it gave one
    (NoSuchBucket, AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch...), else ours
    (endpoint_unreachable, endpoint_refused, ...). The message is already scrubbed."""

    def __init__(self, type_: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.type = type_
        self.message = message
        self.details = details or {}


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each secret. Belt and braces: error texts from SDKs are not
    ours, and a credential must never reach a result, a log line or a webhook body."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text
