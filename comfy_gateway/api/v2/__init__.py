"""The Comfy API v2 face (/api/v2/...), as the official `comfy-sdk` expects it: a second face
over the same runtime and store as the gateway's own API. See the README, "Use the official
Comfy SDK"."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ..auth import require_api_key
from . import assets, events, health, jobs

PREFIX = "/api/v2"


def routers() -> tuple[APIRouter, APIRouter]:
    """(protected, open): the first behind the same API key check as every gateway route."""
    protected = APIRouter(prefix=PREFIX, dependencies=[Depends(require_api_key)])
    for module in (jobs, events, assets):
        protected.include_router(module.router)
    open_ = APIRouter(prefix=PREFIX)
    open_.include_router(health.router)
    return protected, open_
