"""The fake ComfyUI against the recorded transcripts of real ComfyUI 0.3.75, and its knobs."""
from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from PIL import Image

from comfy_gateway.testing.fake_comfyui import FakeComfyUI

from .support.transcripts import transcript

needs_transcripts = pytest.mark.transcripts  # documents which tests read the recordings


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


# ------------------------------------------------------------------ transcripts
@needs_transcripts
async def test_ws_connect_and_misc_gets_match_transcript(fake, http):
    ws = await client(http, fake)
    want = transcript("00_ws_connect.json")["ws_messages"]
    assert [f["type"] for f in ws.frames] == [m["type"] for m in want]
    assert norm(ws.frames[0]["data"], {ws.cid: "SID"}) == norm(want[0]["data"], {want[0]["data"]["sid"]: "SID"})
    assert ws.frames[1]["data"] == want[1]["data"]
    silent = await WS(http, fake.url, "x").open(feature_flags=False)  # no feature_flags asked: none sent
    await asyncio.sleep(0.1)
    assert [f["type"] for f in silent.frames] == ["status"]
    misc = transcript("01_misc_get.json")
    for path in ["/queue", "/prompt", "/features", "/history?max_items=1", "/object_info/EmptyImage",
                 "/embeddings", "/models", "/api/queue"]:
        assert list(await get(http, fake.url + path)) == misc[path], path
    st, stats = await get(http, fake.url + "/system_stats")
    assert st == 200 and list(stats["system"]) == list(misc["/system_stats"][1]["system"])


@needs_transcripts
async def test_empty_save_frames_history_and_view_match_transcript(fake, http):
    t = transcript("10_empty_save.json")
    ws = await client(http, fake)
    pid, frames = await run(http, fake, ws, t["request"]["prompt"])
    tp, tc = t["post_response"]["prompt_id"], t["request"]["client_id"]
    assert [f["type"] for f in frames] == [m["type"] for m in t["ws_messages"]]
    assert norm(frames, {pid: "PID"}) == norm([{"type": m["type"], "data": m["data"]} for m in t["ws_messages"]],
                                              {tp: "PID"})
    st, hist = await get(http, f"{fake.url}/history/{pid}")
    assert st == 200 and norm(hist, {pid: "PID", ws.cid: "CID"}) == norm(t["history"], {tp: "PID", tc: "CID"})
    async with http.get(fake.url + t["view"]["url"]) as r:
        body = await r.read()
        assert r.status == 200
        for h in ("Content-Type", "Content-Disposition"):
            assert r.headers[h] == t["view"]["headers"][h]
        assert int(r.headers["Content-Length"]) == len(body)
    img = Image.open(io.BytesIO(body))
    assert img.format == "PNG" and list(img.size) == t["view"]["png_size"]
    assert list(img.getpixel((0, 0))) == t["view"]["first_pixel"]
    async with http.get(fake.url + t["view"]["url"] + "&preview=webp") as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/webp"
    assert await get(http, fake.url + "/view?filename=nope.png") == (404, b"")
    assert (await get(http, fake.url + "/view?filename=../secret.png"))[0] == t["view_traversal"]["status"]
    assert (await get(http, fake.url + "/view?filename=x.png&subfolder=../..")) == (403, b"")
    assert await get(http, fake.url + "/history/" + str(uuid.uuid4())) == (200, {})


@needs_transcripts
async def test_cached_and_client_prompt_id_match_transcripts(fake, http):
    fake.set(cache=True)
    t10, t11, t12 = (transcript(n) for n in ("10_empty_save.json", "11_empty_save_cached.json",
                                             "12_client_prompt_id.json"))
    ws = await client(http, fake)
    await run(http, fake, ws, t10["request"]["prompt"])
    pid, frames = await run(http, fake, ws, t11["request"]["prompt"])
    assert norm(frames, {pid: "PID"}) == norm([{"type": m["type"], "data": m["data"]} for m in t11["ws_messages"]],
                                              {t11["post_response"]["prompt_id"]: "PID"})
    st, hist = await get(http, f"{fake.url}/history/{pid}")
    assert hist[pid]["outputs"] == t11["history"][t11["post_response"]["prompt_id"]]["outputs"]
    want_pid = str(uuid.uuid4())
    pid, frames = await run(http, fake, ws, t12["request"]["prompt"], prompt_id=want_pid)
    assert pid == want_pid and [f["type"] for f in frames] == [m["type"] for m in t12["ws_messages"]]


def _invalid_cases():
    e = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}}

    def E(**kw):
        return {"class_type": "EmptyImage", "inputs": {**e["inputs"], **kw}}
    s = {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}
    return {
        "unknown_class_type": {"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}, "2": s}},
        "missing_required_input": {"prompt": {"1": {"class_type": "EmptyImage", "inputs": {
            "width": 64, "height": 64, "batch_size": 1}}, "2": s}},
        "missing_link_input": {"prompt": {"1": e, "2": {"class_type": "SaveImage",
                                                        "inputs": {"filename_prefix": "x"}}}},
        "value_out_of_range": {"prompt": {"1": E(width=0), "2": s}},
        "wrong_value_type": {"prompt": {"1": E(width="abc"), "2": s}},
        "bad_combo_value": {"prompt": {"1": {"class_type": "LoadImage", "inputs": {"image": "nope.png"}}, "2": s}},
        "link_to_missing_node": {"prompt": {"1": e, "2": {**s, "inputs": {"images": ["99", 0],
                                                                          "filename_prefix": "x"}}}},
        "link_type_mismatch": {"prompt": {"1": {"class_type": "EmptyLatentImage", "inputs": {
            "width": 64, "height": 64, "batch_size": 1}}, "2": s}},
        "no_output_node": {"prompt": {"1": e}},
        "empty_prompt": {"prompt": {}},
        "no_prompt_key": {"client_id": "x"},
        "node_missing_class_type": {"prompt": {"1": {"inputs": {}}, "2": s}},
    }


@needs_transcripts
async def test_invalid_prompts_answer_like_transcript(fake, http):
    t = transcript("30_invalid_prompts.json")
    cases = _invalid_cases()
    assert set(cases) | {"malformed_json_body"} == set(t)
    for name, body in cases.items():
        st, r = await post(http, fake.url + "/prompt", body)
        assert st == t[name]["status"], name
        assert norm(r, {}) == norm(t[name]["body"], {}), name
    st, r = await post(http, fake.url + "/prompt", "{not json", raw=True)
    assert (st, r) == (500, t["malformed_json_body"]["body"])
    assert (await get(http, fake.url + "/queue"))[1] == {"queue_running": [], "queue_pending": []}


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


@needs_transcripts
async def test_upload_rename_rules_match_transcript(fake, http):
    want = transcript("80_upload_history_extra.json", "v0.3.64")["upload_rename_behaviour"]
    got = {"first(overwrite=true)": await upload(http, fake, "same.png", png("red"), overwrite="true"),
           "different content, no overwrite": await upload(http, fake, "same.png", png("green")),
           "same content as existing 'same (1).png', no overwrite": await upload(http, fake, "same.png",
                                                                               png("green")),
           "overwrite=1": await upload(http, fake, "same.png", png("blue"), overwrite="1"),
           "type=temp": await upload(http, fake, "same.png", png("blue"), type="temp"),
           "no image field": await upload(http, fake, "same.png", None, subfolder="x")}
    assert {k: (list(v) if k == "no image field" else v[1]) for k, v in got.items()} == want
    assert os.path.getsize(fake.dirs.input + "/same (1).png") == len(png("green"))
    assert (await upload(http, fake, "x.png", png("red"), subfolder="../.."))[0] == 400


@needs_transcripts
async def test_upload_pipeline_matches_transcript(fake, http):
    t = transcript("20_upload_pipeline.json")
    assert (await upload(http, fake, "probe_upload.png", png((255, 0, 0)), type="input", overwrite="true")) == \
        (200, t["uploads"]["first(type=input,overwrite=true)"]["json"])
    ws = await client(http, fake)
    pid, frames = await run(http, fake, ws, t["request"]["prompt"])
    key = [(f["type"], f["data"].get("node"), list(f["data"].get("nodes", {}))) for f in frames]
    assert key == [(m["type"], m["data"].get("node"), list(m["data"].get("nodes", {}))) for m in t["ws_messages"]]
    hist = (await get(http, f"{fake.url}/history/{pid}"))[1][pid]
    want = t["history"][t["post_response"]["prompt_id"]]
    assert list(hist) == list(want) and hist["meta"] == want["meta"] and hist["prompt"][4] == want["prompt"][4]
    assert hist["outputs"]["7"] == want["outputs"]["7"]
    for nid, view in t["views"].items():
        out = hist["outputs"][nid]["images"][0]
        st, body = await get(http, f"{fake.url}/view?filename={out['filename']}&subfolder={out['subfolder']}"
                                   f"&type={out['type']}")
        img = Image.open(io.BytesIO(body))
        assert list(img.size) == view["size"] and list(img.getpixel((0, 0))) == view["pixel_0_0"]
    assert hist["outputs"]["8"]["images"][0]["filename"].startswith("ComfyUI_temp_")


@needs_transcripts
async def test_runtime_error_matches_transcript(fake, http):
    t = transcript("40_runtime_errors.json")["corrupt_image"]
    assert (await upload(http, fake, "corrupt.png", b"not an image at all"))[0] == 200
    ws = await client(http, fake)
    pid, frames = await run(http, fake, ws, t["request"]["prompt"])
    subst = {pid: "PID", t["post_response"]["prompt_id"]: "PID", fake.dirs.input: "BASE_DIR/ComfyUI-0.3.75/input"}
    assert norm(frames, subst) == norm([{"type": m["type"], "data": m["data"]} for m in t["ws_messages"]], subst)
    hist = (await get(http, f"{fake.url}/history/{pid}"))[1]
    want = t["history"][t["post_response"]["prompt_id"]]
    assert norm(hist[pid]["status"], subst) == norm(want["status"], subst)
    assert (hist[pid]["outputs"], hist[pid]["meta"]) == ({}, {})


@needs_transcripts
async def test_queue_delete_and_interrupt_like_transcript(fake, http):
    t = transcript("50_queue_interrupt.json")
    fake.set(node_delay=0.3)
    ws = await client(http, fake)
    mids = {"10": "ImageInvert", "11": "ImageInvert", "12": "ImageInvert"}
    pids = []
    for i in range(3):
        st, r = await post(http, fake.url + "/prompt", {"prompt": chain(len(mids), i, "slow"), "client_id": ws.cid})
        pids.append(r["prompt_id"])
    await ws.wait(lambda f: f["type"] == "executing" and f["data"]["node"] == "10")
    q = (await get(http, fake.url + "/queue"))[1]
    assert [x[1] for x in q["queue_running"]] == pids[:1] and [x[1] for x in q["queue_pending"]] == pids[1:]
    run0 = q["queue_running"][0]
    assert len(run0) == 5 and run0[4] == ["99"] and list(run0[3]) == ["client_id", "create_time"]
    assert await post(http, fake.url + "/queue", {"delete": [pids[1], pids[0]]}) == (200, "")
    q = (await get(http, fake.url + "/queue"))[1]
    assert [x[1] for x in q["queue_running"]] == pids[:1] and [x[1] for x in q["queue_pending"]] == pids[2:]
    assert await post(http, fake.url + "/interrupt", {"prompt_id": pids[2]}) == (200, "")  # not running: no-op
    assert await post(http, fake.url + "/interrupt", {"prompt_id": pids[0]}) == (200, "")
    await ws.done(pids[0])
    ev = [f for f in ws.of(pids[0]) if f["type"] == "execution_interrupted"][0]
    want = [m for m in t["ws_messages"] if m["type"] == "execution_interrupted"][0]["data"]
    assert list(ev["data"]) == list(want) and (ev["data"]["node_id"], ev["data"]["executed"]) == ("11", ["1", "10"])
    assert [f["type"] for f in ws.of(pids[0])][-3:] == ["execution_interrupted", "status", "executing"]
    await ws.done(pids[2])
    h = (await get(http, f"{fake.url}/history/{pids[0]}"))[1][pids[0]]
    wh = t["history"][t["posts"][0][1]["prompt_id"]][t["posts"][0][1]["prompt_id"]]
    assert [m[0] for m in h["status"]["messages"]] == [m[0] for m in wh["status"]["messages"]]
    assert (h["status"]["status_str"], h["status"]["completed"], h["outputs"], h["meta"]) == ("error", False, {}, {})
    assert (await get(http, f"{fake.url}/history/{pids[1]}"))[1] == {}  # deleted: no history at all
    fake.set(hang=True)
    for i in range(2):
        await post(http, fake.url + "/prompt", {"prompt": chain(0, 50 + i), "client_id": ws.cid})
    assert await post(http, fake.url + "/queue", {"clear": True}) == (200, "")
    assert (await get(http, fake.url + "/queue"))[1] == {"queue_running": [], "queue_pending": []}


@needs_transcripts
async def test_visibility_matches_transcript(fake, http):
    t = transcript("60_visibility.json")
    a, other = await client(http, fake), await client(http, fake)
    anon = await WS(http, fake.url).open()
    assert len(anon.frames[0]["data"]["sid"]) == 32
    marks = [len(x.frames) for x in (other, anon)]
    await run(http, fake, a, t["with_client_id"]["request"]["prompt"])
    await asyncio.sleep(0.05)
    for ws, m, key in ((other, marks[0], "other_client_saw"), (anon, marks[1], "anonymous_socket_saw")):
        assert [(f["type"], f["data"]) for f in ws.frames[m:]] == [(x["type"], x["data"]) for x in t[key]]
    marks = [len(x.frames) for x in (a, other, anon)]
    st, r = await post(http, fake.url + "/prompt", {"prompt": t["with_client_id"]["request"]["prompt"]})
    pid = r["prompt_id"]
    await anon.wait(lambda f: f["type"] == "status" and f["data"]["status"]["exec_info"]["queue_remaining"] == 0,
                    start=marks[2])
    await asyncio.sleep(0.05)
    want = [(x["type"], x["data"].get("nodes", {}).keys()) for x in t["no_client_id_other_client_saw"]]
    for ws, m in zip((a, other, anon), marks):
        assert [(f["type"], f["data"].get("nodes", {}).keys()) for f in ws.frames[m:]] == want
    h = (await get(http, f"{fake.url}/history/{pid}"))[1][pid]
    assert list(h["prompt"][3]) == ["create_time"] and h["status"]["status_str"] == "success"
    # a second socket with the same clientId replaces the first
    a2 = await WS(http, fake.url, a.cid).open()
    n1 = len(a.frames)
    pid, frames = await run(http, fake, a2, chain(0, 7))
    assert not [f for f in a.frames[n1:] if f["data"].get("prompt_id") == pid]


# ------------------------------------------------------------------------ knobs
async def test_node_delay_history_lag_and_fail_next(fake, http):
    ws = await client(http, fake)
    fake.set(node_delay=0.2)
    t0 = time.monotonic()
    await run(http, fake, ws, chain(1))
    assert time.monotonic() - t0 >= 0.6
    fake.set(node_delay=0, history_lag=0.5)
    st, r = await post(http, fake.url + "/prompt", {"prompt": chain(0, 3), "client_id": ws.cid})
    pid = r["prompt_id"]
    await ws.wait(lambda f: f["type"] == "execution_success" and f["data"]["prompt_id"] == pid)
    assert (await get(http, f"{fake.url}/history/{pid}"))[1] == {}
    assert (await get(http, f"{fake.url}/queue"))[1]["queue_running"][0][1] == pid
    await ws.done(pid)
    assert pid in (await get(http, f"{fake.url}/history/{pid}"))[1]
    fake.set(history_lag=0)
    assert (await post(http, fake.url + "/fake/control", {"fail_next": 1}))[1]["fail_next"] == 1
    pid, frames = await run(http, fake, ws, chain(1, 4))
    err = [f for f in frames if f["type"] == "execution_error"][0]["data"]
    assert (err["node_id"], err["node_type"], err["exception_type"]) == ("1", "EmptyImage", "RuntimeError")
    assert isinstance(err["traceback"], list) and err["current_inputs"]["width"] == [64]
    assert [f["type"] for f in frames][-3:] == ["execution_error", "status", "executing"]
    assert (await get(http, f"{fake.url}/history/{pid}"))[1][pid]["status"]["status_str"] == "error"
    assert fake.knobs["fail_next"] == 0
    pid, frames = await run(http, fake, ws, chain(1, 5))
    assert "execution_success" in [f["type"] for f in frames]


async def test_websocket_knobs(fake, http):
    fake.set(drop_ws_after_frames=3)
    ws = await client(http, fake, feature_flags=False)  # frame 1: status with sid
    await post(http, fake.url + "/prompt", {"prompt": chain(0, 1), "client_id": ws.cid})
    await asyncio.wait_for(ws.task, 5)
    assert ws.closed and len(ws.frames) == 3
    fake.set(drop_ws_after_frames=None)
    ws = await client(http, fake)
    assert (await post(http, fake.url + "/fake/control", {"drop_ws_now": True}))[0] == 200
    await asyncio.wait_for(ws.task, 5)
    assert ws.closed and fake.stats["ws_connections_open"] == 0
    fake.set(refuse_ws=True)
    with pytest.raises(aiohttp.WSServerHandshakeError) as ei:
        await http.ws_connect(fake.url + "/ws?clientId=x")
    assert ei.value.status == 503
    fake.set(refuse_ws=False)
    ws = await client(http, fake)
    await run(http, fake, ws, chain(0, 2))
    assert fake.stats["ws_connections_opened"] == 3


async def test_hang_down_restart_and_reset(fake, http):
    ws = await client(http, fake)
    first, _ = await run(http, fake, ws, chain(0, 1))
    fake.set(hang=True)
    for i in range(3):
        await post(http, fake.url + "/prompt", {"prompt": chain(0, 10 + i), "client_id": ws.cid})
    await asyncio.sleep(0.2)
    q = (await get(http, fake.url + "/queue"))[1]
    assert (len(q["queue_running"]), len(q["queue_pending"])) == (0, 3)
    assert (await get(http, fake.url + "/prompt"))[1] == {"exec_info": {"queue_remaining": 3}}
    fake.set(down=True)
    assert (await get(http, fake.url + "/queue"))[0] == 503
    assert (await get(http, fake.url + "/api/history"))[0] == 503
    await asyncio.wait_for(ws.task, 5)
    stats = (await get(http, fake.url + "/fake/stats"))[1]
    assert (stats["prompts_received"], stats["max_queue_length"], stats["prompts_executed"]) == (4, 3, 1)
    fake.set(down=False, hang=False)
    ws = await client(http, fake)
    await ws.wait(lambda f: f["type"] == "status" and f["data"]["status"]["exec_info"]["queue_remaining"] == 0)
    assert len((await get(http, fake.url + "/history"))[1]) == 4
    assert (await post(http, fake.url + "/fake/control", {"hang": True, "restart": True}))[0] == 200
    await asyncio.wait_for(ws.task, 5)
    assert (await get(http, fake.url + "/history"))[1] == {}
    st, r = await post(http, fake.url + "/prompt", {"prompt": chain(0, 1)})
    assert r["number"] == 0 and (await get(http, fake.url + "/prompt"))[1]["exec_info"]["queue_remaining"] == 1
    assert (await post(http, fake.url + "/fake/reset", {}))[1]["hang"] is False
    assert (await get(http, fake.url + "/queue"))[1]["queue_pending"] == []
    assert (await get(http, fake.url + "/fake/stats"))[1]["prompts_received"] == 0
    assert (await post(http, fake.url + "/fake/control", {"nope": 1}))[0] == 400


async def test_fake_slow_progress_interrupt_fail_and_big_output(fake, http):
    ws = await client(http, fake)
    p = chain(0, 9)
    p["5"] = {"class_type": "FakeSlow", "inputs": {"images": ["1", 0], "seconds": 0.15, "steps": 3}}
    p["99"]["inputs"]["images"] = ["5", 0]
    pid, frames = await run(http, fake, ws, p)
    prog = [f["data"] for f in frames if f["type"] == "progress"]
    assert prog == [{"value": v, "max": 3, "prompt_id": pid, "node": "5"} for v in (1, 2, 3)]
    states = [f["data"]["nodes"]["5"] for f in frames if f["type"] == "progress_state" and "5" in f["data"]["nodes"]]
    assert [(s["state"], s["value"], s["max"]) for s in states] == [
        ("running", 0.0, 1.0), ("running", 1, 3), ("running", 2, 3), ("running", 3, 3)] + [("finished", 3, 3)] * 3
    p["5"]["inputs"].update(seconds=20, steps=200)
    st, r = await post(http, fake.url + "/prompt", {"prompt": p, "client_id": ws.cid})
    await ws.wait(lambda f: f["type"] == "progress" and f["data"]["prompt_id"] == r["prompt_id"])
    t0 = time.monotonic()
    await post(http, fake.url + "/interrupt", {})
    await ws.done(r["prompt_id"])
    assert time.monotonic() - t0 < 2
    ev = [f["data"] for f in ws.of(r["prompt_id"]) if f["type"] == "execution_interrupted"][0]
    assert (ev["node_id"], ev["node_type"], ev["executed"]) == ("5", "FakeSlow", ["1"])
    p["5"] = {"class_type": "FakeFail", "inputs": {"images": ["1", 0], "message": "boom"}}
    pid, frames = await run(http, fake, ws, p)
    err = [f["data"] for f in frames if f["type"] == "execution_error"][0]
    assert (err["exception_message"], err["exception_type"], err["executed"]) == ("boom\n", "RuntimeError", ["1"])
    size = 5 * 1024 * 1024 + 3
    big = {"1": {"class_type": "FakeBigOutput", "inputs": {"bytes": size, "filename_prefix": "vid/big"}}}
    pid, frames = await run(http, fake, ws, big)
    out = [f["data"]["output"] for f in frames if f["type"] == "executed"][0]
    assert out == {"gifs": [{"filename": "big_00001_.mp4", "subfolder": "vid", "type": "output",
                             "format": "video/mp4"}]}
    async with http.get(f"{fake.url}/view?filename=big_00001_.mp4&subfolder=vid&type=output") as r:
        assert r.headers["Content-Type"] == "video/mp4" and int(r.headers["Content-Length"]) == size
        n = 0
        async for chunk in r.content.iter_chunked(1 << 16):
            n += len(chunk)
        assert n == size


async def test_save_counter_api_prefix_and_history_routes(fake, http):
    ws = await client(http, fake)
    p = chain(0, 0x00FF00, "sub/dir/pic")
    p["1"]["inputs"]["batch_size"] = 2
    pid, _ = await run(http, fake, ws, p, extra_data={"my_tag": "abc"})
    pid2, _ = await run(http, fake, ws, p)
    h = (await get(http, fake.url + "/api/history/" + pid2))[1][pid2]
    assert h["outputs"]["99"]["images"] == [{"filename": f"pic_0000{i}_.png", "subfolder": "sub/dir",
                                            "type": "output"} for i in (3, 4)]
    h1 = (await get(http, fake.url + "/history/" + pid))[1][pid]
    assert list(h1["prompt"][3]) == ["my_tag", "client_id", "create_time"]
    assert list((await get(http, fake.url + "/history?max_items=1"))[1]) == [pid2]
    assert await post(http, fake.url + "/api/history", {"delete": [pid]}) == (200, "")
    assert list((await get(http, fake.url + "/history"))[1]) == [pid2]
    await post(http, fake.url + "/history", {"clear": True})
    assert (await get(http, fake.url + "/history"))[1] == {}
    oi = (await get(http, fake.url + "/object_info"))[1]
    assert {"EmptyImage", "LoadImage", "SaveImage", "PreviewImage", "FakeSlow", "FakeBigOutput"} <= set(oi)
    assert (await get(http, fake.url + "/object_info/Nope"))[1] == {}


def test_cli_prints_ready_and_serves(tmp_path):
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "comfy_gateway.testing.fake_comfyui", "--port", "0",
                             "--base-dir", str(tmp_path)], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line[0] == "ready" and line[1].startswith("http://127.0.0.1:")
        import urllib.request
        with urllib.request.urlopen(line[1] + "/queue", timeout=5) as r:
            assert json.loads(r.read()) == {"queue_running": [], "queue_pending": []}
    finally:
        proc.terminate()
        proc.wait(10)
