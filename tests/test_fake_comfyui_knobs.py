"""The fake ComfyUI's knobs (node_delay, history_lag, fail_next, websocket drops, hang, down,
restart, reset), its fake-only nodes, and its command line."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from .support.fake_client import chain, client, fake, get, http, post, run  # noqa: F401


# ------------------------------------------------------------------------ knobs
async def test_node_delay_history_lag_and_fail_next(fake, http):
    ws = await client(http, fake)
    fake.set(node_delay=0.2)
    t0 = time.monotonic()
    await run(http, fake, ws, chain(1))
    assert time.monotonic() - t0 >= 0.6
    # history_lag: the prompt ends (every frame sent, executing None last, as ComfyUI orders
    # them) before its history entry exists; /queue lists it as running until then.
    fake.set(node_delay=0, history_lag=2)
    n = len(ws.frames)
    st, r = await post(http, fake.url + "/prompt", {"prompt": chain(0, 3), "client_id": ws.cid})
    pid = r["prompt_id"]
    await ws.done(pid)
    assert (await get(http, f"{fake.url}/history/{pid}"))[1] == {}
    assert (await get(http, f"{fake.url}/queue"))[1]["queue_running"][0][1] == pid
    assert [f["type"] for f in ws.frames[n:]][-3:] == ["execution_success", "status", "executing"]
    assert ws.frames[-2]["data"]["status"]["exec_info"]["queue_remaining"] == 0
    deadline = time.monotonic() + 30
    while not (await get(http, f"{fake.url}/history/{pid}"))[1]:
        assert time.monotonic() < deadline, "the history entry never came"
        await asyncio.sleep(0.05)
    assert (await get(http, f"{fake.url}/queue"))[1]["queue_running"] == []
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
    # No recording has a node with steps; ComfyUI 0.3.75's progress hook (main.py,
    # hijack_progress) sends progress_state, then `progress` with value, max, prompt_id, node.
    steps = [(f["type"], f["data"].get("value")) for f in frames if f["type"] == "progress"
             or (f["type"] == "progress_state" and f["data"]["nodes"].get("5", {}).get("value", 0) >= 1
                 and f["data"]["nodes"]["5"]["state"] == "running")]
    assert steps == [("progress_state", None), ("progress", 1), ("progress_state", None), ("progress", 2),
                     ("progress_state", None), ("progress", 3)]
    assert {f["data"]["node"] for f in frames if f["type"] == "progress"} == {"5"}
    states = [f["data"]["nodes"]["5"] for f in frames if f["type"] == "progress_state" and "5" in f["data"]["nodes"]]
    assert [(s["state"], s["value"], s["max"]) for s in states] == [
        ("running", 0.0, 1.0), ("running", 1, 3), ("running", 2, 3), ("running", 3, 3)] + [("finished", 3, 3)] * 3
    p["5"]["inputs"].update(seconds=20, steps=200)
    st, r = await post(http, fake.url + "/prompt", {"prompt": p, "client_id": ws.cid})
    await ws.wait(lambda f: f["type"] == "progress_state" and f["data"]["prompt_id"] == r["prompt_id"]
                  and f["data"]["nodes"].get("5", {}).get("value", 0) >= 1)
    await post(http, fake.url + "/interrupt", {})
    # Stopped between two steps, long before its 20 s were up.
    await ws.done(r["prompt_id"], timeout=15)
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
