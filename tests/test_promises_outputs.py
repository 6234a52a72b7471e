"""README promises about outputs that no other test held the gateway to: a webhook for jobs
that were cancelled or timed out, deliveries still pending at shutdown dropped, the warning when
a video or animated output is not converted, and S3_ADDRESSING_STYLE."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import uuid

import httpx
from PIL import Image

from .conftest import WEBHOOK_SECRET, Fake, empty_save
from .support.s3server import S3Server
from .support.wait import until
from .support.webhook_receiver import Receiver


def hooked(fake: Fake, gateway_factory, **env):
    return gateway_factory(fake.url, WEBHOOK_SECRET=WEBHOOK_SECRET, ASSET_ALLOWED_NETWORKS="127.0.0.0/8",
                           WEBHOOK_BACKOFF="0.05", **env)


async def test_cancelled_and_timed_out_jobs_send_their_webhook(fake_factory, gateway_factory, receiver: Receiver,
                                                                client: httpx.AsyncClient):
    fake = fake_factory()
    fake.control(hang=True)  # ComfyUI takes the prompts and runs none
    gw = hooked(fake, gateway_factory)
    cancelled, timed_out = uuid.uuid4().hex, uuid.uuid4().hex
    r = await client.post(gw.url + "/generate", json={"input": {
        "workflow_json": empty_save(prefix="c"), "webhook": {"url": f"{receiver.url}/{cancelled}"}}})
    job = r.json()["id"]
    await until(lambda: fake.stats()["prompts_received"] == 1, "the prompt reached ComfyUI")
    assert (await client.post(f"{gw.url}/result/{job}/cancel")).json()["status"] == "cancelled"
    [d] = await receiver.wait_for(cancelled, 1)
    assert d.verified and (d.json["id"], d.json["status"]) == (job, "cancelled")
    r = await client.post(gw.url + "/generate/sync", json={"input": {
        "workflow_json": empty_save(prefix="t"), "timeout": 0.5, "webhook": {"url": f"{receiver.url}/{timed_out}"}}})
    assert r.json()["status"] == "timed_out"
    [d] = await receiver.wait_for(timed_out, 1)
    assert d.verified and (d.json["id"], d.json["status"]) == (r.json()["id"], "timed_out")
    await until(lambda: fake.stats()["queue_pending"] == 0, "both prompts withdrawn from ComfyUI")


async def test_deliveries_pending_at_shutdown_are_dropped(fake_factory, gateway_factory, receiver: Receiver,
                                                          client: httpx.AsyncClient):
    fake = fake_factory()
    gw = hooked(fake, gateway_factory, SHUTDOWN_GRACE="30", WEBHOOK_TIMEOUT="300")
    url, release = receiver.hold(uuid.uuid4().hex)  # this receiver never answers
    try:
        r = await client.post(gw.url + "/generate/sync", json={"input": {
            "workflow_json": empty_save(), "webhook": {"url": url}}})
        assert r.json()["status"] == "completed"
        await until(lambda: _attempting(client, gw.url, r.json()["id"]), "the delivery is under way")
        os.kill(gw.proc.proc.pid, signal.SIGTERM)
        # No job is in flight: the gateway stops at once, not after the delivery's 300 s or the
        # 30 s grace, leaving the delivery undone.
        assert await asyncio.to_thread(gw.proc.proc.wait, 20) is not None
    finally:
        release.set()


async def _attempting(client: httpx.AsyncClient, base: str, job_id: str) -> bool:
    hook = (await client.get(f"{base}/result/{job_id}")).json()["webhook"]
    return hook is not None and hook["state"] in ("pending", "retrying") and hook["attempts"] >= 0


async def test_video_and_animated_outputs_are_left_as_they_are_with_a_warning(fake_factory, gateway_factory,
                                                                             client: httpx.AsyncClient, tmp_path):
    fake = fake_factory()
    gw = gateway_factory(fake.url)
    # A video (FakeBigOutput writes video/mp4 bytes) and an animated WebP uploaded to the fake
    # and saved back through LoadImage -> SaveImage would lose frames; use the video alone and
    # an animated image the fake serves as an output of its own.
    wf = {"1": {"class_type": "FakeBigOutput", "inputs": {"bytes": 4096, "filename_prefix": "clip",
                                                          "output_key": "gifs"}}}
    r = await client.post(gw.url + "/generate/sync", json={"input": {
        "workflow_json": wf, "convert_output": {"format": "webp"}}})
    assert r.status_code == 200, r.text
    result = r.json()
    [out] = result["output"]
    assert out["filename"].endswith(".mp4") and out["size_bytes"] == 4096
    [warning] = result["warnings"]
    assert out["filename"] in warning and "1 warning(s)" in result["message"]
    assert len((await client.get(out["url"])).content) == 4096


async def test_s3_addressing_style_is_used(comfyui: str, gateway_factory, s3_open: S3Server,
                                           client: httpx.AsyncClient):
    # Against a named host (botocore always uses path style for an IP address): `path` puts the
    # bucket in the path, `virtual` in the host name (env-bucket.localhost, which resolves only
    # where *.localhost does: the job then completes with such URLs, or fails naming that host).
    endpoint = s3_open.url.replace("127.0.0.1", "localhost")
    env = dict(S3_BUCKET_NAME="env-bucket", S3_ENDPOINT_URL=endpoint, S3_REGION="us-east-1",
               S3_ACCESS_KEY_ID=s3_open.access_key_id, S3_SECRET_ACCESS_KEY=s3_open.secret_access_key,
               S3_RETRIES="0")
    body = {"input": {"workflow_json": empty_save(4, 4, 0x010203, "style")}}
    path_gw = gateway_factory(comfyui, S3_ADDRESSING_STYLE="path", **env)
    r = await client.post(path_gw.url + "/generate/sync", json=body)
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    out = r.json()["output"][0]
    assert out["url"].startswith(f"{endpoint}/env-bucket/{out['s3_key']}?")
    assert Image.open(io.BytesIO(s3_open.get("env-bucket", out["s3_key"]))).size == (4, 4)
    virtual_gw = gateway_factory(comfyui, S3_ADDRESSING_STYLE="virtual", **env)
    r = await client.post(virtual_gw.url + "/generate/sync", json=body)
    result = r.json()
    virtual_host = endpoint.replace("://localhost", "://env-bucket.localhost")
    if result["status"] == "completed":
        assert result["output"][0]["url"].startswith(virtual_host + "/"), result
    else:
        assert result["error"]["kind"] == "storage" and "env-bucket.localhost" in result["error"]["message"], result
