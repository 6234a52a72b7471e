"""HTTP routes about files: GET /view (with preview/channel conversion) and POST /upload/image
(with ComfyUI's rename-on-clash rules), ported from ComfyUI 0.3.75's server.py."""
from __future__ import annotations

import asyncio
import mimetypes
import os
from io import BytesIO

from aiohttp import web
from PIL import Image

from comfy_gateway.testing.fake.nodes import Dirs

mimetypes.add_type("image/webp", ".webp")


class FileRoutes:
    def __init__(self, dirs: Dirs):
        self.dirs = dirs

    def routes(self) -> list[tuple[str, str, object]]:
        return [("GET", "/view", self.view), ("POST", "/upload/image", self.upload_image)]

    async def view(self, request: web.Request) -> web.StreamResponse:
        q = request.rel_url.query
        if "filename" not in q:
            return web.Response(status=404)
        filename, output_dir = self.dirs.annotated(q["filename"])
        if not filename:
            return web.Response(status=400)
        if filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        if output_dir is None:
            output_dir = self.dirs.by_type(q.get("type", "output"))
        if output_dir is None:
            return web.Response(status=400)
        if "subfolder" in q:
            full = os.path.join(output_dir, q["subfolder"])
            if os.path.commonpath((os.path.abspath(full), output_dir)) != output_dir:
                return web.Response(status=403)
            output_dir = full
        filename = os.path.basename(filename)
        file = os.path.join(output_dir, filename)
        if not os.path.isfile(file):
            return web.Response(status=404)
        disposition = {"Content-Disposition": f'filename="{filename}"'}
        channel = q.get("channel", "rgba")
        if "preview" in q or channel in ("rgb", "a"):
            return await asyncio.to_thread(self._converted_view, file, q, channel, disposition)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if content_type in {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript",
                            "text/css"}:
            content_type = "application/octet-stream"
        return web.FileResponse(file, headers={**disposition, "Content-Type": content_type})

    @staticmethod
    def _converted_view(file: str, q, channel: str, disposition: dict) -> web.Response:
        buf = BytesIO()
        with Image.open(file) as img:
            if "preview" in q:
                info = q["preview"].split(";")
                fmt = info[0] if info[0] in ("webp", "jpeg") and "a" not in q.get("channel", "") else "webp"
                if fmt == "jpeg" or q.get("channel", "") == "rgb":
                    img = img.convert("RGB")
                img.save(buf, format=fmt, quality=int(info[-1]) if info[-1].isdigit() else 90)
                return web.Response(body=buf.getvalue(), content_type=f"image/{fmt}", headers=disposition)
            if channel == "rgb":
                img.convert("RGB").save(buf, format="PNG")
            else:
                alpha = img.getchannel("A") if img.mode == "RGBA" else Image.new("L", img.size, 255)
                out = Image.new("RGBA", img.size)
                out.putalpha(alpha)
                out.save(buf, format="PNG")
        return web.Response(body=buf.getvalue(), content_type="image/png", headers=disposition)

    async def upload_image(self, request: web.Request) -> web.Response:
        post = await request.post()
        image, overwrite, upload_type = post.get("image"), post.get("overwrite"), post.get("type")
        upload_type = upload_type or "input"
        upload_dir = self.dirs.by_type(upload_type)
        if upload_dir is None:
            raise UnboundLocalError("cannot access local variable 'type_dir'")  # ComfyUI answers 500
        if not (image and image.file):  # a plain form field has no .file: 500, as in ComfyUI
            return web.Response(status=400)
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = post.get("subfolder", "")
        folder = os.path.join(upload_dir, os.path.normpath(subfolder))
        filepath = os.path.abspath(os.path.join(folder, filename))
        if os.path.commonpath((upload_dir, filepath)) != upload_dir:
            return web.Response(status=400)
        body = image.file.read()
        name = await asyncio.to_thread(self._store_upload, folder, filename, filepath, body,
                                       overwrite in ("true", "1"))
        return web.json_response({"name": name, "subfolder": subfolder, "type": upload_type})

    @staticmethod
    def _store_upload(folder: str, filename: str, filepath: str, body: bytes, overwrite: bool) -> str:
        os.makedirs(folder, exist_ok=True)
        stem, ext = os.path.splitext(filename)
        i = 1
        while not overwrite and os.path.exists(filepath):
            with open(filepath, "rb") as f:
                if f.read() == body:  # same content: keep the existing file and its name
                    return filename
            filename = f"{stem} ({i}){ext}"
            filepath = os.path.join(folder, filename)
            i += 1
        with open(filepath, "wb") as f:
            f.write(body)
        return filename
