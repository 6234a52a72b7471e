"""The official Comfy SDK (comfy-sdk 0.5.0, unchanged) against a real gateway process in front
of the real CPU ComfyUI, through the gateway's /api/v2 face: what a team writing against the
SDK sees. API keys go the SDK's own way (COMFY_API_KEY, a bearer token)."""

from __future__ import annotations

import io
import time
import uuid
from typing import Any, Callable

import httpx
import pytest
from blake3 import blake3
from comfy_low.errors import WorkflowFormatUi as LowWorkflowFormatUi
from comfy_low.transport import ComfyLow
from comfy_sdk import (Comfy, ComfyError, IdempotencyKeyReuse, InvalidWorkflow, JobFailed, MissingAsset, NotFound,
                       OutputReady, Progress, StatusChange, Unauthorized)
from PIL import Image

from .conftest import Gateway, empty_save, png_bytes

KEY = "sdk-test-key"


@pytest.fixture(scope="module")
def v2_gateway(comfyui: str, module_gateway_factory: Callable[..., Gateway]) -> Gateway:
    return module_gateway_factory(comfyui, API_KEYS=f"other-key,{KEY}")


def sdk(gw: Gateway, monkeypatch: pytest.MonkeyPatch, key: str | None = KEY) -> Comfy:
    """The SDK's documented set-up: COMFY_BASE_URL names the deployment, COMFY_API_KEY the key."""
    monkeypatch.setenv("COMFY_BASE_URL", gw.url)
    if key is None:
        monkeypatch.delenv("COMFY_API_KEY", raising=False)
    else:
        monkeypatch.setenv("COMFY_API_KEY", key)
    return Comfy()


@pytest.fixture
def comfy(v2_gateway: Gateway, monkeypatch: pytest.MonkeyPatch):
    with sdk(v2_gateway, monkeypatch) as client:
        yield client


def image_of(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def invert(image: Any, prefix: str = "inv") -> dict[str, Any]:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": image}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}}}


def slow_blur() -> dict[str, Any]:
    """Seconds of work in one node on this CPU: long enough to cancel while it runs."""
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 2048, "height": 2048, "batch_size": 1, "color": 255}},
            "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "slow"}}}


def test_run_a_workflow_and_download_its_output(comfy: Comfy, v2_gateway: Gateway, tmp_path):
    job = comfy.run(comfy.workflows.from_json(empty_save(64, 32, 0x336699, prefix="sdk")))
    assert job.status == "succeeded"
    (out,) = job.get_outputs("2")
    assert out.type == "image" and out.content_type == "image/png" and out.job_id == job.id
    data = out.to_bytes()
    assert out.size_bytes == len(data)
    img = image_of(data)
    assert img.size == (64, 32) and img.getpixel((0, 0)) == (0x33, 0x66, 0x99)
    assert out.to_bytes(range=(0, 7)) == data[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.to_file(tmp_path / "o.png").read_bytes() == data
    # The same job through the gateway's own API.
    mine = httpx.get(f"{v2_gateway.url}/result/{job.id}", headers={"X-API-Key": KEY}).json()
    assert mine["status"] == "completed" and mine["output"][0]["filename"] == out.name


def test_upload_an_input_as_an_asset_and_use_it(comfy: Comfy):
    data = png_bytes(16, 8, (200, 10, 30))
    asset = comfy.assets.from_bytes(data, filename="red.png", content_type="image/png")
    wf = comfy.workflows.from_json(invert(asset))
    job = comfy.run(wf)
    assert asset.created_new is True and asset.hash == "blake3:" + blake3(data).hexdigest()
    pixel = image_of(job.get_outputs("3")[0].to_bytes()).getpixel((3, 3))
    assert all(abs(got - want) <= 1 for got, want in zip(pixel, (55, 245, 225))), pixel  # inverted (float rounding)
    # The same bytes again: the SDK finds them by hash and uploads nothing.
    again = comfy.assets.from_bytes(data, filename="again.png", content_type="image/png")
    assert again.commit() == asset.id and again.created_new is False
    fetched = comfy.assets.get(asset.id)
    assert fetched.file_path == "red.png" and fetched.hash == asset.hash
    # An unknown asset in a workflow is refused at submission.
    bogus = {"__type": "core/ASSET", "info": {"id": "f" * 64}}
    with pytest.raises(MissingAsset):
        comfy.submit(comfy.workflows.from_json(invert(bogus)))


def test_follow_live_events_to_the_end(comfy: Comfy):
    job = comfy.submit(comfy.workflows.from_json(empty_save(512, 512, prefix="ev")))
    seen = list(job.events())
    statuses = [e.status for e in seen if isinstance(e, StatusChange)]
    assert statuses[-1] == "succeeded" and statuses[0] in ("queued", "running", "succeeded")
    outputs = [e.output for e in seen if isinstance(e, OutputReady)]
    assert len(outputs) == 1 and image_of(outputs[0].to_bytes()).size == (512, 512)
    # Outputs come before the terminal status: the SDK stops reading there.
    assert seen.index(next(e for e in seen if isinstance(e, OutputReady))) < len(seen) - 1
    assert all(0.0 <= e.value <= 1.0 for e in seen if isinstance(e, Progress))


def test_idempotent_resubmission_and_key_reuse(comfy: Comfy):
    key = str(uuid.uuid4())
    wf = comfy.workflows.from_json(empty_save(prefix="idem"))
    # A refused workflow does not use the key up.
    bad = comfy.workflows.from_json(empty_save(width=0))
    with pytest.raises(InvalidWorkflow):
        comfy.submit(bad, idempotency_key=key)
    job = comfy.submit(wf, idempotency_key=key)
    with pytest.raises(IdempotencyKeyReuse) as same:
        comfy.submit(wf, idempotency_key=key)  # an exact resend
    assert same.value.http_status == 422 and same.value.idempotency_key == key
    with pytest.raises(IdempotencyKeyReuse):
        comfy.submit(comfy.workflows.from_json(empty_save(prefix="other")), idempotency_key=key)
    assert job.result().status == "succeeded"
    assert sum(1 for s in comfy.list_jobs(limit=100) if s.id == job.id) == 1  # one job, not two


def test_cancel_a_running_job(comfy: Comfy, comfyui: str):
    job = comfy.submit(comfy.workflows.from_json(slow_blur()))
    for event in job.events():
        if isinstance(event, StatusChange) and event.status == "running":
            break
    else:
        pytest.fail("the job ended before it ran")
    job.cancel()
    assert job.status in ("canceling", "canceled")
    assert job.wait(timeout=120).status == "canceled"
    assert job.outputs == []
    # ComfyUI was told: nothing of ours runs or waits there any more.
    deadline = time.monotonic() + 60
    while True:
        q = httpx.get(comfyui + "/queue").json()
        if not q["queue_running"] and not q["queue_pending"]:
            break
        assert time.monotonic() < deadline, q
        time.sleep(0.2)
    assert job.cancel().status == "canceled"  # cancel is idempotent: an ended job stays as it is


def test_a_rejected_workflow_raises_from_submit(comfy: Comfy, v2_gateway: Gateway):
    wf = empty_save()
    wf["1"]["inputs"]["width"] = 0
    with pytest.raises(InvalidWorkflow) as bad:
        comfy.submit(comfy.workflows.from_json(wf))
    assert bad.value.http_status == 422
    err = bad.value.details["node_errors"]["1"]["errors"][0]
    assert err["type"] == "value_smaller_than_min" and err["details"] == "width"
    unknown = empty_save()
    unknown["1"]["class_type"] = "NoSuchNode"
    with pytest.raises(InvalidWorkflow, match="NoSuchNode"):
        comfy.submit(comfy.workflows.from_json(unknown))
    # A UI export: the SDK refuses it itself; the gateway does too for a client that sends it.
    ui = {"nodes": [], "links": [], "last_node_id": 0}
    with ComfyLow(v2_gateway.url, KEY) as low, pytest.raises(LowWorkflowFormatUi):
        low.post_jobs(ui)


def test_a_node_failing_at_run_time(comfy: Comfy, comfyui: str):
    # As in the transcripts (40_runtime_errors): a corrupt PNG in ComfyUI's input folder.
    r = httpx.post(comfyui + "/upload/image", files={"image": ("corrupt-sdk.png", b"not an image", "image/png")},
                   data={"overwrite": "true"})
    name = r.json()["name"]
    job = comfy.submit(comfy.workflows.from_json(invert(name)))
    with pytest.raises(JobFailed) as failed:
        job.result()
    assert job.status == "failed"
    assert failed.value.error.code == "node_execution_error"
    assert failed.value.error.node_id == "1" and failed.value.error.class_type == "LoadImage"
    assert failed.value.error.traceback


def test_list_and_get_jobs_and_an_unknown_id(comfy: Comfy):
    a = comfy.submit(comfy.workflows.from_json(empty_save(prefix="la")), metadata={"team": "a"})
    b = comfy.submit(comfy.workflows.from_json(empty_save(prefix="lb")), metadata={"team": "b"})
    a.result(), b.result()
    listed = [s.id for s in comfy.list_jobs(limit=2)]
    assert listed[:2] == [b.id, a.id]  # newest first, paged by next_cursor
    assert [s.id for s in comfy.list_jobs(metadata={"team": "a"})] == [a.id]
    got = comfy.jobs.get(a.id)
    assert got.status == "succeeded" and got.metadata == {"team": "a"} and len(got.outputs) == 1
    flow = got.get_workflow()
    assert flow.format == "api" and flow.graph["1"]["class_type"] == "EmptyImage"
    with pytest.raises(NotFound):
        comfy.jobs.get(str(uuid.uuid4()))
    with pytest.raises(NotFound):
        comfy.assets.get("0" * 64)


def test_api_keys_the_sdks_own_way(v2_gateway: Gateway, monkeypatch: pytest.MonkeyPatch):
    wf = empty_save(prefix="auth")
    for key in (None, "wrong-key"):
        with sdk(v2_gateway, monkeypatch, key) as client, pytest.raises(Unauthorized) as no:
            client.submit(client.workflows.from_json(wf))
        assert no.value.http_status == 401
    r = httpx.get(v2_gateway.url + "/api/v2/jobs")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert httpx.get(v2_gateway.url + "/api/v2/health").json()["status"] == "healthy"  # open, like /health
    with sdk(v2_gateway, monkeypatch, "other-key") as client:  # any of API_KEYS
        assert client.run(client.workflows.from_json(wf)).status == "succeeded"


def test_gateway_extras_reach_a_v2_client(comfy: Comfy, v2_gateway: Gateway):
    """What the README promises a v2 client of the gateway's own options."""
    with ComfyLow(v2_gateway.url, KEY) as low:
        r = low.raw_request("POST", "/jobs", json={"workflow": slow_blur(), "gateway": {"timeout": 1}})
        assert r.status_code == 201, r.text
        assert r.json()["gateway"]["result_url"] == f"/result/{r.json()['id']}"
        job = comfy.jobs.get(r.json()["id"]).wait(timeout=120)  # the gateway's time limit applied
        assert job.status == "failed" and job.error.code == "timeout"
        assert low.get_job(job.id).status.value == "failed"  # the `gateway` field does not break the SDK's models
        bad = low.raw_request("POST", "/jobs", json={"workflow": empty_save(), "gateway": {"colour": "red"}})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
        assert "colour" in bad.json()["error"]["message"]
        hook = low.raw_request("POST", "/jobs", json={"workflow": empty_save(), "gateway": {
            "webhook": {"url": "https://example.com/hook"}}})  # no WEBHOOK_SECRET on this gateway
        assert hook.status_code == 501 and "WEBHOOK_SECRET" in hook.json()["error"]["message"]


def test_outputs_on_s3_are_short_lived_links(s3_gateway: Gateway, s3_auth, monkeypatch: pytest.MonkeyPatch):
    with sdk(s3_gateway, monkeypatch, key=None) as client:
        job = client.run(client.workflows.from_json(empty_save(20, 10, 0x00FF00, prefix="s3sdk")))
        (out,) = job.outputs
        link = out.get_download_url()
        assert "X-Amz-Signature=" in link.url and not link.url.startswith(s3_gateway.url)
        img = image_of(out.to_bytes())  # the SDK follows the redirect to the presigned link
        assert img.size == (20, 10) and img.getpixel((0, 0)) == (0, 255, 0)
        # A bucket of the request's own, through the `gateway` options: its secret shows nowhere.
        own = s3_auth.request_config("auth-bucket")
        with ComfyLow(s3_gateway.url) as low:
            r = low.raw_request("POST", "/jobs", json={"workflow": empty_save(8, 8, prefix="own"), "gateway": {"s3": own}})
            assert r.status_code == 201, r.text
            done = client.jobs.get(r.json()["id"]).result()
            shown = low.raw_request("GET", f"/jobs/{done.id}").text + low.raw_request("GET", f"/jobs/{done.id}/workflow").text
        assert own["secret_access_key"] not in r.text + shown
        assert s3_auth.keys("auth-bucket", f"gw/{done.id}/") != []
        moved = httpx.get(s3_gateway.url + f"/api/v2/assets/{done.outputs[0].id}/content")
        assert moved.status_code == 307 and f"/auth-bucket/gw/{done.id}/" in moved.headers["location"]


def test_a_waiting_job_says_where_it_waits(comfyui: str, gateway_factory, monkeypatch: pytest.MonkeyPatch):
    gw = gateway_factory(comfyui, GENERATION_WORKERS="1", API_KEYS=KEY)  # one prompt at a time
    with sdk(gw, monkeypatch) as client:
        slow = client.submit(client.workflows.from_json(slow_blur()))
        for event in slow.events():
            if isinstance(event, StatusChange) and event.status == "running":
                break
        waiting = client.submit(client.workflows.from_json(empty_save(prefix="behind")))
        first = next(e for e in waiting.events() if isinstance(e, StatusChange))
        assert (first.status, first.queue_position) == ("queued", 1)
        with ComfyLow(gw.url, KEY) as low:
            extra = low.raw_request("GET", f"/jobs/{waiting.id}").json()["gateway"]
        assert extra["status"] == "generating" and extra["queue"]["current_queue"] == "generation"
        assert extra["queue"]["position"] == 0
        slow.cancel()
        assert waiting.result().status == "succeeded" and slow.wait(timeout=120).status == "canceled"


def test_bad_submissions_get_a_clear_4xx_in_the_v2_envelope(v2_gateway: Gateway):
    deep: Any = {"x": 1}
    for _ in range(100):
        deep = {"a": deep}
    auth = {"Authorization": f"Bearer {KEY}"}
    cases = [
        ({"workflow": {"1": {"class_type": "EmptyImage", "inputs": {"width": deep}}}}, {}, 422, "invalid_workflow", "deeper"),
        ({"workflow": {"1": {"class_type": "EmptyImage", "inputs": {"width": 2**80}}}}, {}, 422, "invalid_workflow", "64 bits"),
        ({"workflow": {"1": "not a node"}}, {}, 422, "invalid_workflow", "node 1"),
        ({"workflw": {}}, {}, 422, "invalid_request", "workflow"),
        ({"workflow": empty_save(), "extra_data": {"api_key_comfy_org": "x"}}, {}, 422, "invalid_request", "extra_data"),
        ({"workflow": empty_save()}, {"Idempotency-Key": "k" * 256}, 400, "invalid_request", "Idempotency-Key"),
    ]
    for body, headers, status, code, says in cases:
        r = httpx.post(v2_gateway.url + "/api/v2/jobs", json=body, headers={**auth, **headers})
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
        assert says in r.json()["error"]["message"], r.text
    r = httpx.post(v2_gateway.url + "/api/v2/jobs", content=b"{not json", headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = httpx.post(v2_gateway.url + "/api/v2/assets", files={"file": ("a.png", b"not a png", "image/png")},
                   data={"file_path": "a.png"}, headers=auth)
    assert r.status_code == 422 and "image" in r.json()["error"]["message"], r.text
    r = httpx.post(v2_gateway.url + "/api/v2/assets", files={"file": ("a.txt", b"hello", "text/plain")},
                   data={"file_path": "a.txt", "expected_hash": "blake3:" + "0" * 64}, headers=auth)
    assert r.status_code == 409 and r.json()["error"]["code"] == "hash_mismatch"


def test_an_output_used_as_an_input_and_deleting_assets(comfy: Comfy):
    first = comfy.run(comfy.workflows.from_json(empty_save(6, 6, 0x0A141E, prefix="src")))
    produced = comfy.assets.get(first.outputs[0].id)  # outputs are assets
    assert produced.job_id == first.id and produced.file_path == first.outputs[0].name
    second = comfy.run(comfy.workflows.from_json(invert(produced, prefix="fromout")))
    pixel = image_of(second.get_outputs("3")[0].to_bytes()).getpixel((0, 0))
    assert all(abs(got - want) <= 1 for got, want in zip(pixel, (245, 235, 225))), pixel
    with pytest.raises(ComfyError) as kept:
        comfy.assets.delete(produced.id)  # an output goes with its job
    assert kept.value.http_status == 409
    upload = comfy.assets.from_bytes(png_bytes(2, 2, (9, 9, 9)), filename="gone.png", content_type="image/png")
    upload.commit()
    comfy.assets.delete(upload.id)
    with pytest.raises(NotFound):
        comfy.assets.get(upload.id)


def test_named_keys_see_only_their_own_v2_jobs(comfyui: str, gateway_factory, tmp_path, monkeypatch):
    """With API_KEYS_FILE, a v2 job belongs to the key that submitted it: another key that is
    not an admin gets NotFound for it, its events and its outputs, and does not list it; one
    Idempotency-Key used by two keys makes two jobs; an admin sees them all."""
    keys = {"alice": "alice-v2-key-0123456789", "bob": "bob-v2-key-0123456789", "root": "root-v2-key-0123456789"}
    (tmp_path / "keys.toml").write_text(
        f'[keys.alice]\nkey = "{keys["alice"]}"\n\n[keys.bob]\nkey = "{keys["bob"]}"\n\n'
        f'[keys.root]\nkey = "{keys["root"]}"\nadmin = true\n')
    gw = gateway_factory(comfyui, API_KEYS_FILE=str(tmp_path / "keys.toml"))
    with sdk(gw, monkeypatch, keys["alice"]) as alice:
        job = alice.submit(alice.workflows.from_json(empty_save(prefix="own")), idempotency_key="shared-key").result()
        (out,) = job.get_outputs("2")
        assert image_of(out.to_bytes()).size == (64, 32)
    with sdk(gw, monkeypatch, keys["bob"]) as bob:
        with pytest.raises(NotFound):
            bob.jobs.get(job.id)
        with pytest.raises(NotFound):
            bob.assets.get(out.id)
        assert job.id not in [s.id for s in bob.list_jobs()]
        # The same Idempotency-Key from another key is another job, not a reuse.
        mine = bob.submit(bob.workflows.from_json(empty_save(prefix="own")), idempotency_key="shared-key").result()
        assert mine.id != job.id and mine.status == "succeeded"
        assert [s.id for s in bob.list_jobs()] == [mine.id]
    headers = {"Authorization": f"Bearer {keys['bob']}"}
    for path in (f"/api/v2/jobs/{job.id}", f"/api/v2/jobs/{job.id}/events", f"/api/v2/jobs/{job.id}/workflow",
                 f"/api/v2/assets/{out.id}/content", f"/result/{job.id}"):
        assert httpx.get(gw.url + path, headers=headers).status_code == 404, path
    assert httpx.post(f"{gw.url}/api/v2/jobs/{job.id}/cancel", headers=headers).status_code == 404
    with sdk(gw, monkeypatch, keys["root"]) as root:
        assert {job.id, mine.id} <= {s.id for s in root.list_jobs()}
        assert root.jobs.get(job.id).status == "succeeded"
