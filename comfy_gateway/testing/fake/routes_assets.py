"""ComfyUI's assets API as a server started with --enable-assets serves it (app/assets/api/
routes.py, ComfyUI 0.33): /features says "assets": true with the 0.33.0 keys, and model files
go to `models/<folder>/<blake3 hex><ext>`, listed by loaders under that name (`loader_path`).

Only what a gateway delivering models uses: HEAD /api/assets/hash/{hash}, POST /api/assets
(multipart), POST /api/assets/from-hash. Without --enable-assets none of this is installed:
0.3.75, which the fake is otherwise, has no such routes (404)."""
from __future__ import annotations

import json
import os
import re
import uuid
from datetime import datetime, timezone

from aiohttp import web
from blake3 import blake3

from comfy_gateway.testing.fake.nodes.files import Dirs
from comfy_gateway.testing.fake.protocol import MAX_UPLOAD_SIZE

# GET /features of ComfyUI 0.33.0 (01_misc_get.json), started with --enable-assets.
FEATURES_WITH_ASSETS = {"supports_preview_metadata": True, "supports_model_type_tags": True,
                        "max_upload_size": MAX_UPLOAD_SIZE, "extension": {"manager": {"supports_v4": True}},
                        "node_replacements": True, "assets": True}
MODEL_FOLDERS = {"checkpoints", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision", "style_models",
                 "embeddings", "controlnet", "gligen", "upscale_models", "latent_upscale_models", "hypernetworks",
                 "photomaker", "model_patches", "audio_encoders"}
_HASH = re.compile(r"blake3:[0-9a-f]{64}")


def _error(status: int, code: str, message: str, details: dict | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "details": details or {}}}, status=status)


class AssetRoutes:
    def __init__(self, dirs: Dirs, stats: dict):
        self.dirs = dirs
        self.contents: dict[str, str] = {}  # "blake3:<hex>" -> absolute path
        self._stats = stats  # asset_uploads: POST /api/assets received (a gateway sends a file once)

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self._features)
        app.router.add_route("HEAD", "/api/assets/hash/{hash}", self.head_hash)
        app.router.add_post("/api/assets", self.upload)
        app.router.add_post("/api/assets/from-hash", self.from_hash)

    @web.middleware
    async def _features(self, request: web.Request, handler):
        if request.method == "GET" and request.path in ("/features", "/api/features"):
            return web.json_response(FEATURES_WITH_ASSETS)
        return await handler(request)

    async def head_hash(self, request: web.Request) -> web.Response:
        h = request.match_info["hash"].strip().lower()
        if not _HASH.fullmatch(h):
            return _error(400, "INVALID_HASH", "hash must be like 'blake3:<hex>'")
        return web.Response(status=200 if h in self.contents else 404)

    async def from_hash(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "INVALID_JSON", "Request body must be valid JSON.")
        h = str(body.get("hash", "")).strip().lower()
        if h not in self.contents:
            return _error(404, "ASSET_NOT_FOUND", f"Asset content {h} does not exist")
        return web.json_response(self._asset(h, body.get("name") or h.split(":", 1)[1], body.get("tags") or [], True),
                                 status=201)

    async def upload(self, request: web.Request) -> web.Response:
        self._stats["asset_uploads"] = self._stats.get("asset_uploads", 0) + 1
        if not (request.content_type or "").lower().startswith("multipart/"):
            return _error(415, "UNSUPPORTED_MEDIA_TYPE", "Use multipart/form-data for uploads.")
        reader = await request.multipart()
        tags_raw: list[str] = []
        name = provided = client_name = None
        tmp, digest = None, blake3()
        while (field := await reader.next()) is not None:
            if field.name == "hash":
                provided = (await field.text()).strip().lower() or None
                if provided and not _HASH.fullmatch(provided):
                    return _error(400, "INVALID_HASH", "hash must be like 'blake3:<hex>'")
            elif field.name == "file":
                client_name = (field.filename or "").strip()
                tmp = os.path.join(self.dirs.temp, f".upload-{uuid.uuid4().hex}.part")
                with open(tmp, "wb") as out:
                    while chunk := await field.read_chunk(8 * 1024 * 1024):
                        digest.update(chunk)
                        out.write(chunk)
            elif field.name == "tags":
                tags_raw.append(await field.text())
            elif field.name == "name":
                name = (await field.text()) or None
        try:
            tags = _parse_tags(tags_raw)
            folder = _model_folder(tags)
        except ValueError as exc:
            if tmp:
                os.unlink(tmp)
            return _error(400, "INVALID_BODY", str(exc))
        if provided and provided in self.contents:  # fast path: known content, nothing stored
            if tmp:
                os.unlink(tmp)
            return web.json_response(self._asset(provided, name or provided, tags, True), status=201)
        if tmp is None:
            return _error(400, "MISSING_FILE", "Form must include a 'file' part or a known 'hash'.")
        h = "blake3:" + digest.hexdigest()
        if provided and provided != h:
            os.unlink(tmp)
            return _error(400, "HASH_MISMATCH", "Uploaded file hash does not match provided hash.")
        ext = os.path.splitext(client_name or name or "")[1]
        dest_dir = os.path.join(self.dirs.base, "models", folder)
        os.makedirs(dest_dir, exist_ok=True)
        dest = os.path.join(dest_dir, digest.hexdigest() + (ext if 0 < len(ext) <= 16 else ""))
        os.replace(tmp, dest)
        self.contents[h] = dest
        return web.json_response(self._asset(h, name or client_name or "upload", tags, True), status=201)

    def _asset(self, h: str, name: str, tags: list[str], created_new: bool) -> dict:
        path = self.contents[h]
        loader_path = os.path.basename(path)
        folder = os.path.basename(os.path.dirname(path))
        now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()
        return {"id": str(uuid.uuid4()), "name": name, "hash": h, "loader_path": loader_path,
                "display_name": f"{folder}/{loader_path}", "asset_hash": h, "size": os.path.getsize(path),
                "mime_type": "application/octet-stream", "tags": sorted({*tags, "uploaded"}),
                "user_metadata": {"filename": loader_path}, "created_at": now, "updated_at": now,
                "last_access_time": now, "created_new": created_new}


def _parse_tags(raw: list[str]) -> list[str]:
    """UploadAssetSpec: each part a JSON array, comma-separated, or one tag; lowercased, deduplicated."""
    items: list[str] = []
    for s in (r.strip() for r in raw):
        if s.startswith("["):
            try:
                items += [str(x) for x in json.loads(s)]
                continue
            except ValueError:
                pass
        items += [p for p in s.split(",") if p.strip()]
    out: list[str] = []
    for t in (t.strip().lower() for t in items):
        if t and t not in out:
            out.append(t)
    if not out or out[0] not in ("models", "input", "output"):
        raise ValueError("first tag must be one of: models, input, output")
    return out


def _model_folder(tags: list[str]) -> str:
    """path_utils.resolve_destination_from_tags, for models."""
    if tags[0] != "models":
        raise ValueError("the fake stores models only")
    typed = [t for t in tags if t.startswith("model_type:")]
    if len(typed) != 1 or not typed[0].split(":", 1)[1]:
        raise ValueError("models uploads require exactly one model_type:<folder_name> tag")
    folder = typed[0].split(":", 1)[1]
    if folder not in MODEL_FOLDERS:
        raise ValueError(f"unknown model category '{folder}'")
    return folder
