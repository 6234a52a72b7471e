"""All three call modes end to end against a real ComfyUI (CPU, no weights)."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import httpx
from PIL import Image

from .conftest import Gateway, empty_save, png_bytes
from .support.sse import collect


async def fetch_image(client: httpx.AsyncClient, url: str) -> Image.Image:
    r = await client.get(url)
    assert r.status_code == 200, r.text
    return Image.open(io.BytesIO(r.content)).convert("RGB")


async def upload_to_comfyui(client: httpx.AsyncClient, comfyui: str, name: str, data: bytes) -> str:
    r = await client.post(comfyui + "/upload/image", files={"image": (name, data, "image/png")},
                          data={"overwrite": "true"})
    assert r.status_code == 200, r.text
    return r.json()["name"]


def invert_workflow(image_name: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


async def test_sync_empty_image_returns_the_real_png(gateway: Gateway, client: httpx.AsyncClient):
    r = await client.post(gateway.url + "/generate/sync",
                          json={"input": {"workflow_json": empty_save(96, 40, 0x112233, "sync")}})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "completed" and result["error"] is None
    assert len(result["output"]) == 1
    out = result["output"][0]
    assert out["node_id"] == "2" and out["output_type"] == "images" and out["type"] == "output"
    assert out["filename"].startswith("sync_") and out["filename"].endswith(".png")
    # Written under OUTPUT_DIR/<job id>/ and served at its url.
    assert Path(out["local_path"]) == gateway.output_dir.resolve() / result["id"] / out["filename"]
    assert Path(out["local_path"]).stat().st_size == out["size_bytes"]
    img = await fetch_image(client, out["url"])
    assert img.size == (96, 40)
    assert img.getpixel((0, 0)) == (0x11, 0x22, 0x33)
    assert img.getpixel((95, 39)) == (0x11, 0x22, 0x33)
    d = result["durations"]
    assert d["total"] > 0 and d["generation"] > 0 and d["postprocess"] >= 0


async def test_async_generate_then_result(gateway: Gateway, client: httpx.AsyncClient):
    rid = str(uuid.uuid4())
    r = await client.post(gateway.url + "/generate",
                          json={"input": {"request_id": rid, "workflow_json": empty_save(32, 32, 0xFF0000)}})
    assert r.status_code == 202, r.text
    assert r.json()["id"] == rid
    assert r.headers["location"] == f"/result/{rid}"
    # Follow it to the end through the stream of an existing job, then read the result.
    stream = await collect(client, "GET", f"{gateway.url}/result/{rid}/stream")
    assert stream.events[-1].event == "final_result"
    result = (await client.get(f"{gateway.url}/result/{rid}")).json()
    assert result["status"] == "completed"
    img = await fetch_image(client, result["output"][0]["url"])
    assert img.size == (32, 32) and img.getpixel((5, 5)) == (255, 0, 0)


async def test_stream_reports_status_progress_and_final_result(gateway: Gateway, client: httpx.AsyncClient):
    stream = await collect(client, "POST", gateway.url + "/generate/stream",
                           json_body={"input": {"workflow_json": empty_save(48, 48, 0x00FF00, "st")}})
    assert stream.status_code == 200
    events = stream.events
    ids = [int(e.id) for e in events if e.id and "." not in e.id]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    statuses = [e.data["status"] for e in events if e.event == "status"]
    assert statuses[0] == "queued"
    for expected in ("preprocessing", "generating", "postprocessing"):
        assert expected in statuses
    progress = [e.data["progress"] for e in events if e.event == "progress"]
    assert {p["node"] for p in progress} >= {"1", "2"}
    assert all(p["nodes_total"] == 2 and 0 <= p["value"] <= p["max"] for p in progress)
    for e in events:
        assert set(e.data) >= {"request_id", "status", "message", "elapsed_time", "queue_position", "queue_info"}
        assert set(e.data["queue_info"]) == {"preprocess", "generation", "postprocess"}
        assert set(e.data["queue_position"]) == {"current_queue", "position", "queue_size", "estimated_wait_time"}
    final = events[-1]
    assert final.event == "final_result" and final.data["status"] == "final_result"
    result = final.data["result"]
    assert result["status"] == "completed"
    img = await fetch_image(client, result["output"][0]["url"])
    assert img.size == (48, 48) and img.getpixel((0, 0)) == (0, 255, 0)


async def test_uploaded_png_through_loadimage_invert(gateway: Gateway, comfyui: str, client: httpx.AsyncClient):
    name = await upload_to_comfyui(client, comfyui, f"src-{uuid.uuid4().hex[:8]}.png", png_bytes(40, 30, (10, 100, 200)))
    for mode in ("sync", "stream"):
        body = {"input": {"workflow_json": invert_workflow(name)}}
        if mode == "sync":
            result = (await client.post(gateway.url + "/generate/sync", json=body)).json()
        else:
            result = (await collect(client, "POST", gateway.url + "/generate/stream", json_body=body)).events[-1].data["result"]
        assert result["status"] == "completed", result
        # The PreviewImage (type temp) is skipped unless asked for.
        assert [o["node_id"] for o in result["output"]] == ["3"]
        img = await fetch_image(client, result["output"][0]["url"])
        assert img.size == (40, 30)
        # Inverted: 255 - value, within ComfyUI's float -> 8-bit rounding.
        assert all(abs(a - b) <= 1 for a, b in zip(img.getpixel((0, 0)), (245, 155, 55)))
        assert all(abs(a - b) <= 1 for a, b in zip(img.getpixel((39, 29)), (245, 155, 55)))


async def test_previews_included_when_asked(gateway: Gateway, comfyui: str, client: httpx.AsyncClient):
    name = await upload_to_comfyui(client, comfyui, "prev.png", png_bytes(8, 8, (0, 0, 0)))
    r = await client.post(gateway.url + "/generate/sync",
                          json={"input": {"workflow_json": invert_workflow(name), "include_previews": True}})
    result = r.json()
    assert r.status_code == 200, result
    kinds = sorted((o["node_id"], o["type"]) for o in result["output"])
    assert kinds == [("3", "output"), ("4", "temp")]
    preview = next(o for o in result["output"] if o["type"] == "temp")
    assert (await fetch_image(client, preview["url"])).getpixel((0, 0)) == (0, 0, 0)


async def test_workflow_rejected_by_comfyui(gateway: Gateway, comfyui: str, client: httpx.AsyncClient):
    wf = empty_save()
    wf["1"]["inputs"]["width"] = 0  # below EmptyImage's minimum of 1
    r = await client.post(gateway.url + "/generate/sync", json={"input": {"workflow_json": wf}})
    assert r.status_code == 400, r.text
    result = r.json()
    assert result["status"] == "failed"
    err = result["error"]
    assert err["kind"] == "rejected" and err["type"] == "prompt_outputs_failed_validation"
    node_err = err["node_errors"]["1"]["errors"][0]
    assert node_err["type"] == "value_smaller_than_min" and node_err["details"] == "width"

    # Unknown node class: checked against ComfyUI's /object_info before the job is queued, so
    # even the asynchronous call answers 400 with the failed result rather than a 202 and a job
    # that fails later, and the job still reaches a client following it through /result.
    wf = empty_save()
    wf["1"]["class_type"] = "NoSuchNode"
    r = await client.post(gateway.url + "/generate", json={"input": {"workflow_json": wf}})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["kind"] == "rejected" and r.json()["backend"] is None  # never sent to ComfyUI
    stream = await collect(client, "GET", f"{gateway.url}/result/{r.json()['id']}/stream")
    result = stream.events[-1].data["result"]
    # The gateway passes on ComfyUI's own error type (0.3.75 says invalid_prompt, 0.33.0
    # missing_node_type): compare with what this ComfyUI answers to the same prompt.
    direct = await client.post(comfyui + "/prompt", json={"prompt": wf})
    assert direct.status_code == 400
    assert result["status"] == "failed" and result["error"]["kind"] == "rejected"
    assert result["error"]["type"] == direct.json()["error"]["type"]
    assert "NoSuchNode" in result["error"]["message"]


async def test_node_failing_while_running(gateway: Gateway, comfyui: str, client: httpx.AsyncClient):
    name = await upload_to_comfyui(client, comfyui, "corrupt.png", b"this is not an image at all")
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    r = await client.post(gateway.url + "/generate/sync", json={"input": {"workflow_json": wf}})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["kind"] == "execution" and err["type"] == "execution_error"
    assert err["details"]["node_id"] == "1" and err["details"]["node_type"] == "LoadImage"
    assert err["details"]["exception_type"] == "PIL.UnidentifiedImageError"
    assert "cannot identify image file" in err["message"]
    # ...and the service goes on serving everyone else.
    ok = await client.post(gateway.url + "/generate/sync", json={"input": {"workflow_json": empty_save()}})
    assert ok.status_code == 200 and ok.json()["status"] == "completed"


async def test_second_client_and_reconnect_with_last_event_id(gateway: Gateway, client: httpx.AsyncClient):
    first = await collect(client, "POST", gateway.url + "/generate/stream",
                          json_body={"input": {"workflow_json": empty_save(16, 16, 0x0000FF)}})
    job_id = first.events[0].data["request_id"]
    stored = [e for e in first.events if e.id and "." not in e.id]
    # A second client following the finished job gets the same stored events.
    again = await collect(client, "GET", f"{gateway.url}/result/{job_id}/stream")
    assert [(e.id, e.event, e.data["status"]) for e in again.events] == \
           [(e.id, e.event, e.data["status"]) for e in stored]
    # Reconnecting after event 2 gives what came after, and nothing twice.
    resumed = await collect(client, "GET", f"{gateway.url}/result/{job_id}/stream", headers={"Last-Event-ID": "2"})
    assert [e.id for e in resumed.events] == [e.id for e in stored if int(e.id) > 2]
    assert resumed.events[-1].event == "final_result"


async def test_health_queue_info_readme_and_docs(gateway: Gateway, comfyui: str, client: httpx.AsyncClient):
    # One job of its own, so that the stage measures below exist whatever ran before.
    r = await client.post(gateway.url + "/generate/sync", json={"input": {"workflow_json": empty_save(8, 8)}})
    assert r.status_code == 200, r.text
    health = await client.get(gateway.url + "/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok"
    [backend] = body["backends"]
    version = (await client.get(comfyui + "/system_stats")).json()["system"]["comfyui_version"]
    assert backend["reachable"] and backend["websocket_connected"] and backend["comfyui_version"] == version
    assert "queue_pending" in backend and "queue_running" in backend

    info = (await client.get(gateway.url + "/queue-info")).json()
    assert set(info["queues"]) == {"preprocess", "generation", "postprocess"}
    assert info["queues"]["generation"]["measured_jobs"] >= 1
    assert info["queues"]["generation"]["mean_duration"] > 0

    page = await client.get(gateway.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "comfy-gateway" in page.text and "<h1" in page.text

    docs = await client.get(gateway.url + "/docs")
    assert docs.status_code == 200
    spec = (await client.get(gateway.url + "/openapi.json")).json()
    examples = spec["paths"]["/generate/sync"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert "empty_image" in examples
    for path in ("/generate", "/generate/sync", "/generate/stream", "/result/{request_id}",
                 "/result/{request_id}/stream", "/queue-info", "/health"):
        assert path in spec["paths"]
