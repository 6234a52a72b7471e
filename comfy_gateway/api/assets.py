"""POST /assets: upload a file, get a reference (`asset://<sha256>`) to put in a workflow or in
modifications instead of a URL, for clients that have bytes rather than URLs."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from ..inputs.assets import asset_ref
from ..inputs.errors import InputError, InputTooLarge, InputWrongType
from .deps import runtime_of
from .jsonresp import JSONResponse
from .schemas import ErrorBody

router = APIRouter(tags=["assets"])
FIELDS = ("file", "image")  # "image" is what ComfyUI's own /upload/image calls it


class AssetInfo(BaseModel):
    ref: str = Field(description="put this where a workflow or a modifier takes an image URL")
    sha256: str
    content_type: str = Field(description="read from the content (libmagic), not from the upload's name")
    size_bytes: int
    expires_at: str = Field(description="kept until then (ASSET_TTL); uploading it again keeps it longer")


BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "the file"}}}}}}


def same_origin_only(request: Request) -> None:
    """A web page on another site may post a multipart form here (browsers allow that without
    asking), and fill the disk from a visitor's machine. Browsers say where such a post comes
    from in Origin; programs (curl, httpx) send none."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    if urlsplit(origin).netloc.lower() != (request.headers.get("host") or "").lower():
        raise HTTPException(403, detail=f"uploads from another site's page ({origin}) are refused; "
                                        "send them from your server or from a page of this gateway's origin")


@router.post(
    "/assets", status_code=201, response_model=AssetInfo, openapi_extra={"requestBody": BODY},
    responses={403: {"model": ErrorBody, "description": "Posted by a page of another site (Origin)"},
               413: {"model": ErrorBody, "description": "Over MAX_INPUT_BYTES"},
               415: {"model": ErrorBody, "description": "Not multipart, or sent as an image and not one"},
               422: {"model": ErrorBody, "description": "No file part"}},
    summary="Upload a file; returns a reference a workflow can use instead of a URL",
)
async def upload_asset(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    same_origin_only(request)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise HTTPException(415, detail="send the file as multipart/form-data in a part named 'file' "
                                        f"(curl -F file=@photo.png); got {content_type or 'no Content-Type'}")
    limit = runtime.settings.max_input_bytes
    async with request.form(max_files=1, max_fields=8) as form:
        part = next((form[f] for f in FIELDS if isinstance(form.get(f), UploadFile)), None)
        if part is None:
            raise HTTPException(422, detail="no file: send it in a multipart part named 'file'")
        data = await part.read(limit + 1)
        declared = part.content_type
    try:
        if len(data) > limit:
            raise InputTooLarge(f"over the limit of {limit} bytes (MAX_INPUT_BYTES)")
        blob, expires = await runtime.inputs.store_asset(data, declared)
    except InputError as exc:
        status = 413 if isinstance(exc, InputTooLarge) else 415 if isinstance(exc, InputWrongType) else 422
        raise HTTPException(status, detail=f"file: {exc}") from None
    return JSONResponse(status_code=201, content={
        "ref": asset_ref(blob.sha256), "sha256": blob.sha256, "content_type": blob.mime,
        "size_bytes": blob.size,
        "expires_at": datetime.fromtimestamp(expires, timezone.utc).isoformat(timespec="seconds"),
    })
