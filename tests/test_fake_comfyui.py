"""The fake ComfyUI against the recorded transcripts of real ComfyUI 0.3.75: frames, history,
/view, validation errors, uploads, visibility, and ComfyUI's routes (queue and interrupt: test_fake_comfyui_queue.py)."""
from __future__ import annotations

import asyncio
import io
import json
import os
import re
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


def frames_of(messages: list) -> list:
    return [{"type": m["type"], "data": m["data"]} for m in messages]


def outputs_named(frames: list) -> dict:
    """Each saved file's name -> a placeholder in order of appearance: the fake's save counter
    and the recording's differ when the recording had saved under that prefix before."""
    names = {}
    for f in frames:
        if f["type"] == "executed":
            for out in (f["data"]["output"] or {}).get("images", []):
                names.setdefault(out["filename"], f"FILE{len(names)}")
    return names


def temp_names(obj) -> dict:
    """PreviewImage's random ComfyUI_temp_xxxxx_ prefix -> one placeholder."""
    found = set(re.findall(r"ComfyUI_temp_[a-z]{5}_", json.dumps(obj)))
    return {name: "ComfyUI_temp_RANDOM_" for name in found}


def numbered_like(hist: dict, want: dict) -> dict:
    """The history entry with the recording's queue number (each server counts its own)."""
    return {k: ({**v, "prompt": [next(iter(want.values()))["prompt"][0], *v["prompt"][1:]]}) for k, v in hist.items()}


@needs_transcripts
@pytest.mark.parametrize("version", ["v0.3.75", "v0.33.0"])
async def test_empty_save_frames_history_and_view_match_transcript(fake, http, version):
    t = transcript("10_empty_save.json", version)
    ws = await client(http, fake)
    extra = {"prompt_id": t["request"]["prompt_id"]} if "prompt_id" in t["request"] else {}
    pid, frames = await run(http, fake, ws, t["request"]["prompt"], **extra)
    tp, tc = t["post_response"]["prompt_id"], t["request"]["client_id"]
    want = frames_of(t["ws_messages"])
    assert norm(frames, {pid: "PID", **outputs_named(frames)}) == norm(want, {tp: "PID", **outputs_named(want)})
    st, hist = await get(http, f"{fake.url}/history/{pid}")
    subst = {pid: "PID", ws.cid: "CID", **outputs_named(frames)}
    wsubst = {tp: "PID", tc: "CID", **outputs_named(want)}
    assert st == 200 and norm(numbered_like(hist, t["history"]), subst) == norm(t["history"], wsubst)
    view = t["view"]["url"].replace(next(iter(outputs_named(want))), next(iter(outputs_named(frames))))
    async with http.get(fake.url + view) as r:
        body = await r.read()
        assert r.status == 200
        for h in ("Content-Type", "Content-Disposition"):
            assert norm(r.headers[h], subst) == norm(t["view"]["headers"][h], wsubst)
        assert int(r.headers["Content-Length"]) == len(body)
    img = Image.open(io.BytesIO(body))
    assert img.format == "PNG" and list(img.size) == t["view"]["png_size"]
    assert list(img.getpixel((0, 0))) == t["view"]["first_pixel"]
    async with http.get(fake.url + view + "&preview=webp") as r:
        assert r.status == 200 and r.headers["Content-Type"] == "image/webp"
    assert await get(http, fake.url + "/view?filename=nope.png") == (404, b"")
    assert (await get(http, fake.url + "/view?filename=../secret.png"))[0] == t["view_traversal"]["status"]
    assert await get(http, fake.url + "/history/" + str(uuid.uuid4())) == (200, {})


@needs_transcripts
async def test_view_subfolder_traversal_is_403(fake, http):
    # 0.3.75's recording has no subfolder case; 0.33.0 (unchanged there) answers 403.
    want = transcript("10_empty_save.json", "v0.33.0")["view_traversal_subfolder"]["status"]
    assert (await get(http, fake.url + "/view?filename=x.png&subfolder=../..")) == (want, b"")


@needs_transcripts
@pytest.mark.parametrize("version", ["v0.3.75", "v0.33.0"])
async def test_cached_prompt_matches_transcript(fake, http, version):
    fake.set(cache=True)
    t10, t11 = transcript("10_empty_save.json", version), transcript("11_empty_save_cached.json", version)
    ws = await client(http, fake)
    await run(http, fake, ws, t10["request"]["prompt"])
    pid, frames = await run(http, fake, ws, t11["request"]["prompt"])
    want = frames_of(t11["ws_messages"])
    assert norm(frames, {pid: "PID", **outputs_named(frames)}) == \
        norm(want, {t11["post_response"]["prompt_id"]: "PID", **outputs_named(want)})
    st, hist = await get(http, f"{fake.url}/history/{pid}")
    tp = t11["post_response"]["prompt_id"]
    assert norm(hist[pid]["outputs"], outputs_named(frames)) == norm(t11["history"][tp]["outputs"], outputs_named(want))
    assert norm(hist[pid]["status"], {pid: "PID"}) == norm(t11["history"][tp]["status"], {tp: "PID"})


@needs_transcripts
async def test_client_prompt_id_matches_transcript(fake, http):
    t = transcript("12_client_prompt_id.json")
    ws = await client(http, fake)
    want_pid = t["request"]["prompt_id"]
    pid, frames = await run(http, fake, ws, t["request"]["prompt"], prompt_id=want_pid)
    assert pid == want_pid == t["client_prompt_id"]
    # Every frame, payload and all, as recorded (the id is the client's own: nothing to replace).
    assert norm(frames, {}) == norm(frames_of(t["ws_messages"]), {})
    hist = (await get(http, f"{fake.url}/history/{pid}"))[1]
    assert norm(numbered_like(hist, t["history"]), {ws.cid: "CID"}) == \
        norm(t["history"], {t["request"]["client_id"]: "CID"})


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
    tp = t["post_response"]["prompt_id"]
    want_frames = frames_of(t["ws_messages"])
    subst = {pid: "PID", **outputs_named(frames), **temp_names(frames)}
    wsubst = {tp: "PID", **outputs_named(want_frames), **temp_names(want_frames)}
    # Every frame with its payload: progress_state per node, executed outputs, in order.
    assert norm(frames, subst) == norm(want_frames, wsubst)
    hist = (await get(http, f"{fake.url}/history/{pid}"))[1][pid]
    want = t["history"][tp]
    assert list(hist) == list(want) and hist["meta"] == want["meta"] and hist["prompt"][4] == want["prompt"][4]
    assert norm(hist["outputs"], subst) == norm(want["outputs"], wsubst)
    assert norm(hist["status"], subst) == norm(want["status"], wsubst)
    for nid, view in t["views"].items():
        out = hist["outputs"][nid]["images"][0]
        st, body = await get(http, f"{fake.url}/view?filename={out['filename']}&subfolder={out['subfolder']}"
                                   f"&type={out['type']}")
        img = Image.open(io.BytesIO(body))
        assert list(img.size) == view["size"] and list(img.getpixel((0, 0))) == view["pixel_0_0"]
    assert hist["outputs"]["8"]["images"][0]["filename"].startswith("ComfyUI_temp_")


@needs_transcripts
@pytest.mark.parametrize("version, input_dir, corrupt", [
    ("v0.3.75", "BASE_DIR/ComfyUI-0.3.75/input", b"not an image at all"),
    ("v0.33.0", "COMFYUI/input", png("red")[:24]),  # that recording uploaded a PNG cut in its header
])
async def test_runtime_error_matches_transcript(fake, http, version, input_dir, corrupt):
    t = transcript("40_runtime_errors.json", version)["corrupt_image"]
    assert (await upload(http, fake, "corrupt.png", corrupt))[0] == 200
    ws = await client(http, fake)
    pid, frames = await run(http, fake, ws, t["request"]["prompt"])
    subst = {pid: "PID", t["post_response"]["prompt_id"]: "PID", fake.dirs.input: "INPUT", input_dir: "INPUT"}
    assert norm(frames, subst) == norm(frames_of(t["ws_messages"]), subst)
    hist = (await get(http, f"{fake.url}/history/{pid}"))[1]
    want = t["history"][t["post_response"]["prompt_id"]]
    assert norm(hist[pid]["status"], subst) == norm(want["status"], subst)
    assert (hist[pid]["outputs"], hist[pid]["meta"]) == ({}, {})


@needs_transcripts
@pytest.mark.parametrize("version", ["v0.3.75", "v0.33.0"])
async def test_regex_error_case_matches_transcript(fake, http, version):
    # A bad pattern is no execution_error: RegexExtract gives "", and the prompt succeeds.
    t = transcript("40_runtime_errors.json", version)["regex_error"]
    ws = await client(http, fake)
    pid, frames = await run(http, fake, ws, t["request"]["prompt"])
    tp = t["post_response"]["prompt_id"]
    assert norm(frames, {pid: "PID"}) == norm(frames_of(t["ws_messages"]), {tp: "PID"})
    hist = (await get(http, f"{fake.url}/history/{pid}"))[1][pid]
    want = t["history"][tp]
    assert (hist["outputs"], hist["meta"]) == (want["outputs"], want["meta"])
    assert norm(hist["status"], {pid: "PID"}) == norm(want["status"], {tp: "PID"})


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
