"""Sealing per-request credentials before a job is stored.

A request may carry S3 keys. The job record keeps the request (for idempotency and for the
stages that run later), and a job record may end up anywhere a store puts it (memory now, Redis
later), so credentials are kept there only encrypted: AES-256-GCM under a key the store never
sees, bound to the job id (a sealed value copied into another job does not open).

Why encryption rather than an in-memory vault keyed by job id: the sealed value travels with
the job, so whichever process runs the job's later stage can open it, given the same
SECRETS_KEY. Without SECRETS_KEY the key is random per process, which is exactly as long as the
in-memory store keeps jobs anyway.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "sealed:v1:"


class SealError(Exception):
    """A sealed value could not be opened (another key, another job, or corrupted)."""


class SecretBox:
    def __init__(self, key: bytes | None = None):
        self._aead = AESGCM(key if key else AESGCM.generate_key(bit_length=256))

    def seal(self, value: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, value.encode(), context.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, token: str, context: str) -> str:
        if not token.startswith(PREFIX):
            raise SealError("not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(token[len(PREFIX):])
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise SealError("a sealed credential could not be opened (was SECRETS_KEY changed?)") from exc

    @staticmethod
    def is_sealed(value: object) -> bool:
        return isinstance(value, str) and value.startswith(PREFIX)
