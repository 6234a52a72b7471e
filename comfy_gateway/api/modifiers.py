"""GET /modifiers: every modifier this gateway serves, with its parameters as a typed schema."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from ..workflows.registry import UnknownModifier
from .deps import runtime_of
from .jsonresp import JSONResponse
from .schemas import ErrorBody

router = APIRouter(tags=["modifiers"])


class ModifierInfo(BaseModel):
    name: str = Field(description="what to send as input.modifier")
    kind: str = Field(description="'python' (a BaseModifier class) or 'declarative' (a mapping file)")
    description: str
    workflow: str = Field(description="the workflow file in WORKFLOWS_DIR it is bound to")
    parameters: dict[str, Any] | None = Field(
        description="JSON schema of input.modifications; null for a Python modifier without PARAMETERS, "
                    "which takes any modifications")
    example: dict[str, Any] = Field(description="a request body using it")


class ModifierList(BaseModel):
    modifiers: list[ModifierInfo]


@router.get("/modifiers", response_model=ModifierList, summary="Every modifier, with its parameters")
async def list_modifiers(request: Request) -> JSONResponse:
    return JSONResponse({"modifiers": [d.describe() for d in runtime_of(request).modifiers]})


@router.get("/modifiers/{name}", response_model=ModifierInfo,
            responses={404: {"model": ErrorBody, "description": "No such modifier (the known ones are listed)"}},
            summary="One modifier, with its parameters")
async def one_modifier(request: Request, name: str) -> JSONResponse:
    try:
        return JSONResponse(runtime_of(request).modifiers.get(name).describe())
    except UnknownModifier as exc:
        raise HTTPException(404, detail=str(exc)) from None
