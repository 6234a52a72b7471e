"""The fake ComfyUI against the recorded transcripts of real ComfyUI 0.3.75: frames, history,
/view, validation errors, uploads, queue and interrupt, visibility, and ComfyUI's routes."""
from __future__ import annotations

import asyncio
import io
import os
import uuid

import pytest
from PIL import Image

from .support.fake_client import WS, chain, client, fake, get, http, norm, png, post, run, upload  # noqa: F401
from .support.transcripts import transcript

needs_transcripts = pytest.mark.transcripts  # documents which tests read the recordings


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
