"""Optional API keys (API_KEYS): `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False, description="One of API_KEYS")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of API_KEYS")


def _matches(given: str, keys: list[bytes]) -> bool:
    # Compare with every key, without stopping at the first match, each in constant time:
    # the answer's timing says nothing about how much of a key was right.
    given_b = given.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given_b, key)
    return found


async def require_api_key(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
    header_key: str | None = Security(_header),
) -> None:
    keys = request.app.state.runtime.settings.api_key_list
    if not keys:
        return
    given = bearer.credentials if bearer is not None else header_key
    if not given or not _matches(given, keys):
        raise HTTPException(401, detail="missing or wrong API key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
