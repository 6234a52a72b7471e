"""A small client for the fake ComfyUI tests: a websocket collecting frames, JSON GET/POST,
running a prompt to its end, building prompts and uploads, and the ``fake``/``http`` fixtures
(test modules import them so pytest finds them by name)."""
from __future__ import annotations

import asyncio
import io
import json
import time
import uuid

import aiohttp
import pytest_asyncio
from PIL import Image

from comfy_gateway.testing.fake_comfyui import FakeComfyUI


def norm(obj, subst: dict):
    """Replace ids/paths by placeholders and blank timestamps, so two runs compare equal."""
    if isinstance(obj, dict):
        return {subst.get(k, k): ("<ts>" if k in ("timestamp", "create_time") else
                                  "<tb>" if k == "traceback" else norm(v, subst)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [norm(v, subst) for v in obj]
    if isinstance(obj, str):
        for a, b in subst.items():
            obj = obj.replace(a, b)
    return obj


class WS:
    """A websocket client collecting every JSON frame."""

    def __init__(self, http, url, cid=None):
        self.http, self.url, self.cid, self.frames, self.closed = http, url, cid, [], False

    async def open(self, feature_flags=True):
        self.ws = await self.http.ws_connect(self.url + "/ws" + (f"?clientId={self.cid}" if self.cid else ""))
        self.task = asyncio.create_task(self._read())
        if feature_flags:
            await self.ws.send_str(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        await self.wait(lambda f: f["type"] == ("feature_flags" if feature_flags else "status"))
        return self

    async def _read(self):
        async for m in self.ws:
            if m.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(m.data))
        self.closed = True

    async def wait(self, pred, timeout=10.0, start=0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for f in self.frames[start:]:
                if pred(f):
                    return f
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no matching frame; got {[f['type'] for f in self.frames]}")

    async def done(self, pid, timeout=10.0):
        return await self.wait(lambda f: f["type"] == "executing" and f["data"]["node"] is None
                               and f["data"]["prompt_id"] == pid, timeout)

    def ended(self, pid):
        return any(f["type"] == "executing" and f["data"]["node"] is None and f["data"].get("prompt_id") == pid
                   for f in self.frames)

    def of(self, pid):
        """Status frames and the prompt's own frames, up to its executing None."""
        out = []
        for f in self.frames:
            if f["type"] == "status" or f["data"].get("prompt_id") == pid:
                out.append(f)
                if f["type"] == "executing" and f["data"]["node"] is None and f["data"]["prompt_id"] == pid:
                    break
        return out


@pytest_asyncio.fixture
async def fake(tmp_path):
    f = FakeComfyUI(tmp_path / "comfy")
    await f.start("127.0.0.1", 0)
    yield f
    await f.stop()


@pytest_asyncio.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


async def post(http, url, body, raw=False):
    async with http.post(url, data=body if raw else json.dumps(body)) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


async def get(http, url):
    async with http.get(url) as r:
        body = await r.read()
        try:
            return r.status, json.loads(body)
        except ValueError:
            return r.status, body


async def client(http, fake, feature_flags=True):
    return await WS(http, fake.url, uuid.uuid4().hex).open(feature_flags)


def chain(n_mid=0, color=0, prefix="c", mid="ImageInvert", size=64):
    p = {"1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1,
                                                      "color": color}}}
    prev = "1"
    for i in range(n_mid):
        p[str(10 + i)] = {"class_type": mid, "inputs": {"image": [prev, 0]}}
        prev = str(10 + i)
    p["99"] = {"class_type": "SaveImage", "inputs": {"images": [prev, 0], "filename_prefix": prefix}}
    return p


async def run(http, fake, ws, prompt, timeout=10.0, **extra):
    n = len(ws.frames)
    st, r = await post(http, fake.url + "/prompt", {"prompt": prompt, "client_id": ws.cid, **extra})
    assert st == 200, r
    await ws.done(r["prompt_id"], timeout)
    return r["prompt_id"], ws.frames[n:]



async def upload(http, fake, name, data, **fields):
    fd = aiohttp.FormData()
    if data is not None:
        fd.add_field("image", data, filename=name, content_type="image/png")
    for k, v in fields.items():
        fd.add_field(k, v)
    async with http.post(fake.url + "/upload/image", data=fd) as r:
        text = await r.text()
        return r.status, (json.loads(text) if r.status == 200 else text)


def png(color, size=(64, 48)):
    b = io.BytesIO()
    Image.new("RGB", size, color).save(b, format="PNG")
    return b.getvalue()
