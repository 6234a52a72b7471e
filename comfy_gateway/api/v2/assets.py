"""/api/v2/assets: upload (content hash, dedup), mint from a hash, metadata, content (ranges;
an output on S3 is a redirect to its short-lived link), delete. Uploaded bytes go where the
gateway's own POST /assets puts them; outputs are the gateway job's outputs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from ...inputs.errors import InputError, InputTooLarge
from ...pipeline.runtime import Runtime
from ..assets import same_origin_only
from ..auth import current_key
from ..deps import runtime_of
from ..held_file import HeldFileResponse
from ..jsonresp import JSONResponse
from ..ownership import may_see
from .asset_index import AssetIndex, AssetMeta, blake3_async, parse_hash
from .errors import V2Error, V2Route, envelope, not_found
from .ids import is_upload_id, parse_output_id
from .view import iso, v2_output

router = APIRouter(route_class=V2Route, tags=["v2 assets"])

UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "file_path"],
    "properties": {"file": {"type": "string", "format": "binary"}, "file_path": {"type": "string"},
                   "content_type": {"type": "string"}, "expected_hash": {"type": "string"},
                   "tags": {"type": "array", "items": {"type": "string"}}}}}}}


class FromHash(BaseModel):
    model_config = ConfigDict(extra="ignore")
    hash: str = Field(max_length=200, description="blake3:<hex> (or sha256:<hex>) of bytes already uploaded")
    file_path: str | None = Field(None, max_length=1024)
    tags: list[str] | None = None


def index_of(runtime: Runtime) -> AssetIndex:
    s = runtime.settings
    return AssetIndex(s.assets_dir, s.asset_ttl)


def asset_json(meta: AssetMeta, base: str, *, created_new: bool | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": meta.sha256, "hash": f"blake3:{meta.blake3}", "size_bytes": meta.size_bytes,
        "content_type": meta.content_type, "file_path": meta.file_path, "created_at": iso(meta.created_at),
        "url": f"{base.rstrip('/')}/api/v2/assets/{meta.sha256}/content", "url_expires_at": iso(meta.expires_at),
        "expires_at": iso(meta.expires_at)}
    if created_new is not None:
        body["created_new"] = created_new
    return body


@router.post("/assets", status_code=201, openapi_extra={"requestBody": UPLOAD_BODY},
             summary="Upload a file (multipart); the same bytes again are the same asset")
async def upload(request: Request) -> Response:
    runtime = runtime_of(request)
    same_origin_only(request)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise V2Error(422, "invalid_request", "send the file as multipart/form-data in a part named 'file'")
    limit = runtime.settings.max_input_bytes
    async with request.form(max_files=1, max_fields=64) as form:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise V2Error(422, "invalid_request", "no file: send it in a multipart part named 'file'")
        data = await part.read(limit + 1)
        fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        declared = fields.get("content_type") or part.content_type
        file_path = fields.get("file_path") or part.filename
    if len(data) > limit:
        raise V2Error(413, "payload_too_large", f"over the limit of {limit} bytes (MAX_INPUT_BYTES)")
    b3 = await blake3_async(data)
    expected = fields.get("expected_hash")
    if expected:
        parsed = parse_hash(expected)
        if parsed is None or (parsed[0] == "blake3" and parsed[1] != b3):
            raise V2Error(409, "hash_mismatch", "expected_hash does not match the bytes received "
                                                f"(they hash to blake3:{b3})")
    index = index_of(runtime)
    known = index.find(f"blake3:{b3}")
    try:
        blob, expires = await runtime.inputs.store_asset(data, declared)
    except InputTooLarge as exc:
        raise V2Error(413, "payload_too_large", f"file: {exc}") from None
    except InputError as exc:  # e.g. sent as an image and not one
        raise V2Error(422, "invalid_request", f"file: {exc}") from None
    meta = AssetMeta(blob.sha256, b3, blob.size, declared or blob.mime, file_path,
                     known.created_at if known else time.time(), expires)
    index.remember(meta)
    base = str(request.base_url)
    if known is not None:
        return _json(asset_json(meta, base, created_new=False), 200)
    return _json(asset_json(meta, base, created_new=True), 201)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)


@router.post("/assets/from-hash", summary="An asset over bytes already uploaded, by their hash")
async def from_hash(request: Request, body: FromHash) -> Response:
    meta = index_of(runtime_of(request)).find(body.hash)
    if meta is None:
        raise V2Error(404, "blob_not_found", "no uploaded bytes with that hash (unknown, or older than ASSET_TTL)")
    return _json(asset_json(meta, str(request.base_url), created_new=False))


@router.head("/assets/by-hash/{hash}", summary="200 if bytes with this hash are here, else 404")
async def by_hash(request: Request, hash: str) -> Response:
    return Response(status_code=200 if index_of(runtime_of(request)).find(hash) else 404)


def _expired(asset_id: str) -> Response:
    """The 404 of a file swept between finding it and answering (held_file.py)."""
    err = not_found("asset", asset_id)
    return envelope(err.status, err.code, err.message)


async def _output(request: Request, asset_id: str) -> tuple[dict[str, Any], Any] | None:
    """An output of a job the caller may see, as a v2 asset (and the output), else None."""
    runtime, base = runtime_of(request), str(request.base_url)
    parsed = parse_output_id(asset_id)
    if parsed is None:
        return None
    job = await runtime.store.get(parsed[0])
    if job is None or not may_see(current_key(request), job) or parsed[1] >= len(job.output):
        return None
    out = job.output[parsed[1]]
    s = runtime.settings
    finished = job.finished_at or job.updated_at
    return v2_output(job, parsed[1], out, base, finished + (s.s3_url_expiry if out.s3_key else s.result_ttl)), out


@router.get("/assets/{asset_id}", summary="An asset's metadata and a fresh content link")
async def get_asset(request: Request, asset_id: str) -> Response:
    runtime, base = runtime_of(request), str(request.base_url)
    if is_upload_id(asset_id):
        meta = index_of(runtime).get(asset_id)
        if meta is not None:
            return _json(asset_json(meta, base))
    found = await _output(request, asset_id)
    if found is None:
        raise not_found("asset", asset_id)
    out, _ = found
    job_id = out["job_id"]
    job = await runtime.store.get(job_id)
    return _json({"id": out["id"], "hash": None, "size_bytes": out["size_bytes"], "content_type": out["content_type"],
                  "file_path": out["name"], "created_at": iso(job.finished_at or job.updated_at) if job else None,
                  "url": out["url"], "url_expires_at": out["url_expires_at"], "job_id": job_id})


@router.get("/assets/{asset_id}/content", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}, 206: {"description": "a byte range"}},
            summary="The bytes (honours Range); an output kept on S3 redirects to its short-lived link")
async def content(request: Request, asset_id: str) -> Response:
    runtime = runtime_of(request)
    if is_upload_id(asset_id):
        index = index_of(runtime)
        path, meta = index.blob_path(asset_id), index.get(asset_id)
        if path is not None:
            return HeldFileResponse(path, media_type=meta.content_type if meta else None,
                                    gone=_expired(asset_id))
    found = await _output(request, asset_id)
    if found is None:
        raise not_found("asset", asset_id)
    view, out = found
    # local_path is the gateway's own record of where postprocess wrote the file.
    if out.local_path and Path(out.local_path).is_file():
        return HeldFileResponse(out.local_path, media_type=view["content_type"],
                                    gone=_expired(asset_id))
    if out.url and out.url.startswith(("http://", "https://")):
        return RedirectResponse(out.url, status_code=307)
    raise V2Error(404, "output_unavailable", f"the bytes of {asset_id!r} are no longer kept")


@router.delete("/assets/{asset_id}", status_code=204, response_class=Response,
               summary="Delete an uploaded asset (outputs go with their job)")
async def delete_asset(request: Request, asset_id: str) -> Response:
    runtime = runtime_of(request)
    if parse_output_id(asset_id) is not None and await _output(request, asset_id):
        raise V2Error(409, "asset_in_use", "an output is kept with its job and expires with it (RESULT_TTL)")
    if not (is_upload_id(asset_id) and index_of(runtime).forget(asset_id)):
        raise not_found("asset", asset_id)
    return Response(status_code=204)
