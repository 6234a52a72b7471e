"""The address guard on webhook URLs and request-named S3 endpoints, and credentials that
never show: not in a response, an event stream, a webhook body, an error or a log line."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from .conftest import WEBHOOK_SECRET, Gateway, empty_save
from .support.s3server import S3Server
from .support.sse import collect
from .support.webhook_receiver import Receiver
from .test_webhooks import webhook_state


@pytest.fixture(scope="module")
def guarded(comfyui: str, module_gateway_factory) -> Gateway:
    """Signs webhooks, but opens no private network: loopback is refused like any private address."""
    return module_gateway_factory(comfyui, WEBHOOK_SECRET=WEBHOOK_SECRET)


@pytest.mark.parametrize("field, value", [
    ("webhook", {"url": "http://127.0.0.1:9/hook"}),
    ("webhook", {"url": "http://[::1]:9/hook"}),
    ("webhook", {"url": "http://2130706433/hook"}),
    ("webhook", {"url": "http://169.254.169.254/latest"}),
    ("s3", {"access_key_id": "k", "secret_access_key": "s", "bucket_name": "bkt", "endpoint_url": "http://127.0.0.1:9"}),
    ("s3", {"access_key_id": "k", "secret_access_key": "s", "bucket_name": "bkt", "endpoint_url": "http://10.0.0.8"}),
])
async def test_literal_private_addresses_are_422(guarded: Gateway, client: httpx.AsyncClient, field, value):
    r = await client.post(guarded.url + "/generate", json={"input": {"workflow_json": empty_save(), field: value}})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    where = "input.webhook.url" if field == "webhook" else "input.s3.endpoint_url"
    assert detail.startswith(where) and "not a public address" in detail and "ASSET_ALLOWED_NETWORKS" in detail


async def test_names_resolving_to_loopback_are_refused_where_they_resolve(guarded: Gateway, s3_auth: S3Server,
                                                                          receiver: Receiver, client: httpx.AsyncClient):
    # "localhost" is a name: it passes the request check and is refused once resolved.
    hook = receiver.url.replace("127.0.0.1", "localhost") + "/" + uuid.uuid4().hex
    r = await client.post(guarded.url + "/generate/sync", json={"input": {
        "workflow_json": empty_save(4, 4), "webhook": {"url": hook}}})
    result = r.json()
    assert result["status"] == "completed"
    state = await webhook_state(client, guarded, result["id"], {"delivered", "failed"})
    assert state["state"] == "failed" and "not a public address" in state["last_error"]

    s3 = s3_auth.request_config("auth-bucket", endpoint_url=s3_auth.url.replace("127.0.0.1", "localhost"))
    r = await client.post(guarded.url + "/generate/sync", json={"input": {"workflow_json": empty_save(4, 4), "s3": s3}})
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["kind"] == "storage" and err["type"] == "endpoint_refused"
    assert "s3.endpoint_url" in err["message"] and "not a public address" in err["message"]
    # The output was still fetched and kept.
    assert Path(r.json()["output"][0]["local_path"]).is_file()


async def test_credentials_never_shown(s3_gateway: Gateway, s3_auth: S3Server, receiver: Receiver,
                                       client: httpx.AsyncClient):
    seen: list[str] = []
    p = uuid.uuid4().hex
    good = s3_auth.request_config("auth-bucket")
    body = {"input": {"workflow_json": empty_save(4, 4, 0x222222, "sec"), "s3": good,
                      "webhook": {"url": receiver.script(p)}}}
    r = await client.post(s3_gateway.url + "/generate/sync", json=body)
    assert r.json()["status"] == "completed"
    seen += [r.text, (await client.get(f"{s3_gateway.url}/result/{r.json()['id']}")).text]
    stream = await collect(client, "GET", f"{s3_gateway.url}/result/{r.json()['id']}/stream")
    seen += [str(e.data) for e in stream.events]
    # Resending the same request (same id) answers with the stored job: still nothing to see.
    body["input"]["request_id"] = str(uuid.uuid4())
    for _ in range(2):
        seen.append((await client.post(s3_gateway.url + "/generate/sync", json=body)).text)

    wrong_secret = "wrong-" + uuid.uuid4().hex
    failed = await client.post(s3_gateway.url + "/generate/sync", json={"input": {
        "workflow_json": empty_save(4, 4), "s3": {**good, "secret_access_key": wrong_secret},
        "webhook": {"url": receiver.script(p)}}})
    assert failed.json()["status"] == "failed"
    seen.append(failed.text)
    # A schema error about the s3 object does not echo it either.
    bad = await client.post(s3_gateway.url + "/generate", json={"input": {
        "workflow_json": empty_save(), "s3": {**good, "bucket_name": "Not_A_Bucket"}}})
    assert bad.status_code == 422 and "input.s3.bucket_name" in bad.json()["detail"]
    seen.append(bad.text)

    deliveries = await receiver.wait_for(p, 3)
    seen += [d.body.decode() for d in deliveries]
    log = s3_gateway.log()
    assert "webhook of job" in log  # the log was captured
    for text in seen + [log]:
        assert good["secret_access_key"] not in text
        assert wrong_secret not in text
        assert WEBHOOK_SECRET not in text and WEBHOOK_SECRET.removeprefix("whsec_") not in text
    # The key id shows only inside presigned URLs (SigV4 needs it): never in a log line or an error.
    assert good["access_key_id"] not in log
    assert good["access_key_id"] not in str(failed.json()["error"])
