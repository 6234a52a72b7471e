"""Webhooks end to end: a real ComfyUI, the gateway, and a real receiver that checks each
Standard Webhooks signature with the standard library alone."""

from __future__ import annotations

import uuid

import httpx

from .conftest import WEBHOOK_SECRET, Gateway, empty_save
from .support.procs import free_port
from .support.wait import until as wait_until
from .support.webhook_receiver import Receiver


async def webhook_state(client: httpx.AsyncClient, gateway: Gateway, job_id: str, until: set[str],
                        timeout: float = 60) -> dict:
    """The job's webhook record once it reaches one of `until`, within `timeout` seconds."""
    async def reached():
        hook = (await client.get(f"{gateway.url}/result/{job_id}")).json()["webhook"]
        return hook if hook["state"] in until else None

    return await wait_until(reached, f"job {job_id}'s webhook reaches {sorted(until)}", timeout)


def path() -> str:
    return uuid.uuid4().hex


async def test_retried_after_500_twice_then_delivered_signed(s3_gateway: Gateway, receiver: Receiver,
                                                             client: httpx.AsyncClient):
    p = path()
    url = receiver.script(p, 500, 500)
    extra = {"id": "not-the-job", "status": "not-the-status", "order": 42}
    r = await client.post(s3_gateway.url + "/generate/sync", json={"input": {
        "workflow_json": empty_save(8, 8, 0x123456, "hook"), "webhook": {"url": url, "extra_params": extra}}})
    result = r.json()
    assert r.status_code == 200 and result["status"] == "completed"
    assert result["webhook"]["state"] in ("pending", "retrying", "delivered")

    deliveries = await receiver.wait_for(p, 3)
    assert [d.answered for d in deliveries] == [500, 500, 200]
    assert all(d.verified for d in deliveries)
    # One message, retried: the same webhook-id every time (receivers de-duplicate on it).
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1
    body = deliveries[-1].json
    assert body["id"] == result["id"] and body["status"] == "completed"
    assert body["extra_params"] == extra  # under their own key, id and status untouched
    assert body["output"][0]["url"] == result["output"][0]["url"]
    assert "webhook" not in body

    hook = await webhook_state(client, s3_gateway, result["id"], {"delivered", "failed"})
    assert hook == {"state": "delivered", "attempts": 3, "last_status": 200, "last_error": None}


async def test_failed_job_sends_its_webhook_too(s3_gateway: Gateway, receiver: Receiver, client: httpx.AsyncClient):
    p = path()
    wf = empty_save()
    wf["1"]["inputs"]["width"] = 0  # ComfyUI would reject it: refused up front (400), the job still ends
    r = await client.post(s3_gateway.url + "/generate", json={"input": {
        "workflow_json": wf, "webhook": {"url": receiver.script(p)}}})
    assert r.status_code == 400 and r.json()["status"] == "failed"
    (delivery,) = await receiver.wait_for(p, 1)
    assert delivery.verified
    body = delivery.json
    assert body["id"] == r.json()["id"] and body["status"] == "failed"
    assert body["error"]["kind"] == "rejected" and body["extra_params"] == {}


async def test_4xx_is_not_retried_but_429_is(s3_gateway: Gateway, receiver: Receiver, client: httpx.AsyncClient):
    gone, busy = path(), path()
    jobs = []
    for p, statuses in ((gone, (400,)), (busy, (429,))):
        r = await client.post(s3_gateway.url + "/generate/sync", json={"input": {
            "workflow_json": empty_save(4, 4), "webhook": {"url": receiver.script(p, *statuses)}}})
        jobs.append(r.json()["id"])
    hook = await webhook_state(client, s3_gateway, jobs[0], {"delivered", "failed"})
    assert hook["state"] == "failed" and hook["attempts"] == 1 and hook["last_status"] == 400
    assert "HTTP 400" in hook["last_error"]
    hook = await webhook_state(client, s3_gateway, jobs[1], {"delivered", "failed"})
    assert hook == {"state": "delivered", "attempts": 2, "last_status": 200, "last_error": None}
    assert [d.answered for d in receiver.at(gone)] == [400]


async def test_dead_receiver_gives_up_after_the_retries(s3_gateway: Gateway, client: httpx.AsyncClient):
    dead = f"http://127.0.0.1:{free_port()}/hook"
    r = await client.post(s3_gateway.url + "/generate/sync", json={"input": {
        "workflow_json": empty_save(4, 4), "webhook": {"url": dead}}})
    assert r.json()["status"] == "completed"
    hook = await webhook_state(client, s3_gateway, r.json()["id"], {"delivered", "failed"})
    assert hook["state"] == "failed" and hook["attempts"] == 4  # WEBHOOK_RETRIES=3, plus the first
    assert hook["last_status"] is None and "Cannot connect" in hook["last_error"]


async def test_slow_receiver_delays_no_other_job(s3_gateway: Gateway, receiver: Receiver, client: httpx.AsyncClient):
    # This gateway has one postprocess worker: if a delivery held it, the next job would hang.
    p = path()
    url, release = receiver.hold(p)
    first = (await client.post(s3_gateway.url + "/generate/sync", json={"input": {
        "workflow_json": empty_save(4, 4), "webhook": {"url": url}}})).json()
    assert first["status"] == "completed"
    for _ in range(2):
        other = await client.post(s3_gateway.url + "/generate/sync", json={"input": {"workflow_json": empty_save(5, 5)}})
        assert other.json()["status"] == "completed"
    # ...all while the first job's receiver still has not answered.
    hook = (await client.get(f"{s3_gateway.url}/result/{first['id']}")).json()["webhook"]
    assert hook["state"] == "pending" and hook["attempts"] == 0 and receiver.at(p) == []
    release.set()
    await receiver.wait_for(p, 1)
    hook = await webhook_state(client, s3_gateway, first["id"], {"delivered", "failed"})
    assert hook["state"] == "delivered" and hook["attempts"] == 1


async def test_webhook_url_setting_covers_every_job(comfyui: str, gateway_factory, receiver: Receiver,
                                                    client: httpx.AsyncClient):
    p = path()
    gw = gateway_factory(comfyui, WEBHOOK_URL=receiver.script(p), WEBHOOK_SECRET=WEBHOOK_SECRET,
                         ASSET_ALLOWED_NETWORKS="127.0.0.1")
    r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": empty_save(6, 6)}})
    result = r.json()
    (delivery,) = await receiver.wait_for(p, 1)
    assert delivery.verified and delivery.json["id"] == result["id"]
    # Output links in the body are absolute, based at PUBLIC_URL (default http://API_HOST:API_PORT).
    assert delivery.json["output"][0]["url"] == result["output"][0]["url"]
    assert delivery.json["output"][0]["url"].startswith(gw.url + "/outputs/")
