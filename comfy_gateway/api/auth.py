"""API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`, checked against the KeyRing
(API_KEYS_FILE, or API_KEYS). `require_api_key` is the dependency every protected router has;
it leaves the caller (an ApiKey: name and limits, never the key) on `request.state.api_key`,
which `current_key` reads back. See ownership.py for what a caller may see."""

from __future__ import annotations

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..access.keys import ANONYMOUS, ApiKey, KeyRing

_bearer = HTTPBearer(auto_error=False, description="An API key (API_KEYS_FILE or API_KEYS)")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (API_KEYS_FILE or API_KEYS)")


def keyring_of(request: Request) -> KeyRing:
    return request.app.state.keys


async def require_api_key(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
    header_key: str | None = Security(_header),
) -> ApiKey:
    ring = keyring_of(request)
    if not ring.enabled:
        request.state.api_key = ANONYMOUS
        return ANONYMOUS
    given = bearer.credentials if bearer is not None else header_key
    key = ring.match(given) if given else None
    if key is None:
        raise HTTPException(401, detail="missing or wrong API key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
    request.state.api_key = key
    return key


def current_key(request: Request) -> ApiKey:
    """The caller of a request that passed require_api_key (the anonymous admin otherwise)."""
    return getattr(request.state, "api_key", ANONYMOUS)
