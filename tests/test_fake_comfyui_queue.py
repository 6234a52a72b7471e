"""The fake ComfyUI against 50_queue_interrupt.json, step by step: /queue while a prompt runs,
deleting pending prompts, /interrupt with and without a prompt_id, and clearing the queue."""
from __future__ import annotations

from .support.fake_client import client, fake, get, http, norm, post  # noqa: F401  (fake, http: fixtures)
from .support.transcripts import transcript
from .test_fake_comfyui import frames_of, needs_transcripts


def _recorded_prompt(t: dict, color: int, prefix: str) -> dict:
    """The prompt of 50_queue_interrupt.json, elided there, rebuilt from its frames: the node ids
    the third (uninterrupted) prompt ran, the interrupted node's type where it ran, and as
    many saved images per prompt as the recording's history lists."""
    third = t["posts"][2][1]["prompt_id"]
    ran = [m["data"]["node"] for m in t["ws_messages"]
           if m["type"] == "executing" and m["data"].get("prompt_id") == third and m["data"]["node"]]
    stopped = [m["data"] for m in t["ws_messages"] if m["type"] == "execution_interrupted"][0]
    batch = len(t["history"][third][third]["outputs"][ran[-1]]["images"])
    p = {ran[0]: {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": batch,
                                                         "color": color}}}
    prev = ran[0]
    for nid in ran[1:-1]:
        if nid == stopped["node_id"]:
            p[nid] = {"class_type": stopped["node_type"], "inputs": {"image": [prev, 0], "blur_radius": 3, "sigma": 1.0}}
        else:
            p[nid] = {"class_type": "ImageInvert", "inputs": {"image": [prev, 0]}}
        prev = nid
    p[ran[-1]] = {"class_type": "SaveImage", "inputs": {"images": [prev, 0], "filename_prefix": prefix}}
    return p


def running_now(fake, pid: str) -> bool:
    return fake.queue.running is not None and fake.queue.running[1] == pid


def _own(frames: list, pid: str) -> list:
    return [f for f in frames if f["type"] != "status" and f["data"].get("prompt_id") == pid]


@needs_transcripts
async def test_queue_delete_and_interrupt_like_transcript(fake, http):
    """Every step of 50_queue_interrupt.json, in its order, each answer checked against it."""
    t = transcript("50_queue_interrupt.json")
    rec = [p[1]["prompt_id"] for p in t["posts"]]
    rec_frames = frames_of(t["ws_messages"])
    stopped = [m["data"] for m in t["ws_messages"] if m["type"] == "execution_interrupted"]
    # The recording's long node (an 18 s blur) stays busy until interrupted; nothing else waits.
    long_node = {stopped[0]["node_type"]: 120}
    fake.set(class_delay=long_node)
    ws = await client(http, fake)
    pids = []
    for i in range(3):
        st, r = await post(http, fake.url + "/prompt", {"prompt": _recorded_prompt(t, i, "slow"), "client_id": ws.cid})
        assert st == t["posts"][i][0]
        pids.append(r["prompt_id"])
    await ws.wait(lambda f: f["type"] == "executing" and f["data"]["node"] == stopped[0]["node_id"])
    q = (await get(http, fake.url + "/queue"))[1]
    want = t["queue_while_running_summary"]
    assert [[x[1], list(x[3]), x[4]] for x in q["queue_running"] + q["queue_pending"]] == \
        [[pids[rec.index(x[1])], list(x[3]), x[4]] for x in want["running"] + want["pending"]]
    # Deleting the pending one and the running one: only the pending one goes.
    resp = await post(http, fake.url + "/queue", {"delete": [pids[1], pids[0]]})
    assert resp == (t["delete_pending_response"]["status"], t["delete_pending_response"]["body"])
    q = (await get(http, fake.url + "/queue"))[1]
    assert {"running": [x[1] for x in q["queue_running"]], "pending": [x[1] for x in q["queue_pending"]]} == \
        {k: [pids[rec.index(p)] for p in v] for k, v in t["queue_after_delete"].items()}
    r = t["interrupt_not_running_pid_response"]
    assert await post(http, fake.url + "/interrupt", {"prompt_id": pids[2]}) == (r["status"], r["body"])
    assert running_now(fake, pids[0]) and not ws.ended(pids[0])  # a no-op: the first one still runs
    fake.set(class_delay={})  # the third one runs through
    r = t["interrupt_running_response"]
    assert await post(http, fake.url + "/interrupt", {"prompt_id": pids[0]}) == (r["status"], r["body"])
    await ws.done(pids[0])
    # The first prompt's own frames, payloads and all, as recorded: stopped at the node that was
    # running, which is not counted as executed.
    subst = {pids[0]: "PID"}
    assert norm(_own(ws.frames, pids[0]), subst) == norm(_own(rec_frames, rec[0]), {rec[0]: "PID"})
    assert _own(ws.frames, pids[0])[-2]["type"] == t["first_job_end_type"]
    await ws.done(pids[2])
    assert [(f["type"], f["data"].get("node")) for f in _own(ws.frames, pids[2])] == \
        [(f["type"], f["data"].get("node")) for f in _own(rec_frames, rec[2])]
    assert _own(ws.frames, pids[2])[-2]["type"] == t["third_job_end_type"]
    h = (await get(http, f"{fake.url}/history/{pids[0]}"))[1][pids[0]]
    wh = t["history"][rec[0]][rec[0]]
    assert norm(h["status"], subst) == norm(wh["status"], {rec[0]: "PID"})
    assert (h["outputs"], h["meta"]) == (wh["outputs"], wh["meta"])
    assert (await get(http, f"{fake.url}/history/{pids[1]}"))[1] == t["history"][rec[1]]  # deleted: none

    # A bare /interrupt (no body) stops whatever runs.
    fake.set(class_delay=long_node)
    st, r = await post(http, fake.url + "/prompt", {"prompt": _recorded_prompt(t, 4, "slow"), "client_id": ws.cid})
    fourth = r["prompt_id"]
    await ws.wait(lambda f: f["type"] == "executing" and f["data"]["node"] == stopped[1]["node_id"]
                  and f["data"]["prompt_id"] == fourth)
    async with http.post(fake.url + "/interrupt") as resp:
        assert resp.status == t["global_interrupt_no_body"]["status"]
    await ws.done(fourth)
    got = [f["data"] for f in _own(ws.frames, fourth) if f["type"] == "execution_interrupted"]
    assert _own(ws.frames, fourth)[-2]["type"] == t["fourth_job_end_type"]
    assert [(d["node_id"], d["node_type"], d["executed"]) for d in got] == \
        [(stopped[1]["node_id"], stopped[1]["node_type"], stopped[1]["executed"])]

    # {"clear": true} while a prompt runs: the pending ones go, the running one stays.
    posted = []
    for i in range(3):
        st, r = await post(http, fake.url + "/prompt", {"prompt": _recorded_prompt(t, 5 + i, "slow"), "client_id": ws.cid})
        posted.append(r["prompt_id"])
    await ws.wait(lambda f: f["type"] == "executing" and f["data"].get("prompt_id") == posted[0])
    st, _ = await post(http, fake.url + "/queue", {"clear": True})
    assert st == t["clear_response"]
    q = (await get(http, fake.url + "/queue"))[1]
    assert ([len(q["queue_running"]), len(q["queue_pending"])] ==
            [len(t["queue_after_clear"]["running"]), len(t["queue_after_clear"]["pending"])])
    assert q["queue_running"][0][1] == posted[0]
    assert await post(http, fake.url + "/interrupt", {"prompt_id": posted[0]}) == (200, "")
    await ws.done(posted[0])
    for pid in posted[1:]:
        assert (await get(http, f"{fake.url}/history/{pid}"))[1] == t["history_of_cleared_pending"]
