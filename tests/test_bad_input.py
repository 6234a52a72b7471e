"""Every bad input gets a clear 4xx naming what is wrong, and the service keeps serving."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from .conftest import Gateway, empty_save

S3 = {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "example-secret", "bucket_name": "my-bucket"}


def post(client: httpx.AsyncClient, gateway: Gateway, path: str, **kw):
    return client.post(gateway.url + path, **kw)


@pytest.mark.parametrize("path", ["/generate", "/generate/sync", "/generate/stream"])
async def test_malformed_json_is_400(gateway: Gateway, client: httpx.AsyncClient, path: str):
    r = await post(client, gateway, path, content=b'{"input": {"workflow_json": ', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("malformed JSON body")


@pytest.mark.parametrize("body, where", [
    ({}, "input"),
    ({"input": []}, "input"),
    ({"input": {"workflow_json": []}}, "input.workflow_json"),
    ({"input": {"workflow_json": {"1": "EmptyImage"}}}, "input.workflow_json.1"),
    ({"input": {"workflow_json": {"1": {"inputs": {}}}}}, "input.workflow_json.1.class_type"),
    ({"input": {"workflow_json": {"1": {"class_type": "", "inputs": {}}}}}, "input.workflow_json.1.class_type"),
    ({"input": {"workflow_json": {"1": {"class_type": "SaveImage", "inputs": [1]}}}}, "input.workflow_json.1.inputs"),
    ({"input": {"workflow_json": {}}}, "'workflow_json' has no nodes"),
    ({"input": {"request_id": "not-a-uuid", "workflow_json": empty_save()}}, "input.request_id"),
    ({"input": {"request_id": 12, "workflow_json": empty_save()}}, "input.request_id"),
    ({"input": {"workflow_json": empty_save(), "colour": 1}}, "input.colour"),
    ({"input": {"workflow_json": empty_save()}, "extra": 1}, "extra"),
    ({"input": {}}, "exactly one of 'workflow_json' or 'modifier'"),
    ({"input": {"workflow_json": empty_save(), "modifier": "Image2Image"}}, "exactly one of"),
    ({"input": {"workflow_json": empty_save(), "modifications": {"seed": 1}}}, "'modifications' are for a modifier"),
    ({"input": {"modifier": "Image2Image", "modifications": ["seed"]}}, "input.modifications"),
    ({"input": {"workflow_json": empty_save(), "include_previews": "maybe"}}, "input.include_previews"),
    ({"input": {"workflow_json": empty_save(), "webhook": {"url": "not a url"}}}, "input.webhook.url"),
    ({"input": {"workflow_json": empty_save(), "s3": {"bucket_name": "b"}}}, "input.s3"),
    ({"input": {"workflow_json": {"1": {"class_type": "X", "inputs": {"seed": 2**64}}}}},
     "workflow_json.1.inputs.seed: integer 18446744073709551616 does not fit in 64 bits"),
    ({"input": {"workflow_json": {"1": {"class_type": "X", "inputs": {"": -(2**63) - 1}}}}}, "does not fit in 64 bits"),
    ({"input": {"workflow_json": {"1": {"class_type": "X", "inputs": {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}}}},
     "nested deeper than 64 levels"),
    ({"input": {"modifier": "M", "modifications": {"n": 10**30}}}, "modifications.n: integer"),
    ({"input": {"workflow_json": empty_save(), "s3": {**S3, "bucket_name": "Bad_Name"}}}, "input.s3.bucket_name"),
    ({"input": {"workflow_json": empty_save(), "s3": {**S3, "endpoint_url": "ftp://x"}}}, "input.s3.endpoint_url"),
    ({"input": {"workflow_json": empty_save(), "s3": {**S3, "region": "EU WEST"}}}, "input.s3.region"),
    ({"input": {"workflow_json": empty_save(), "s3": {**S3, "secret_access_key": ""}}}, "input.s3.secret_access_key"),
    ({"input": {"workflow_json": empty_save(), "s3": {**S3, "acl": "public"}}}, "input.s3.acl"),
    ({"input": {"workflow_json": empty_save(), "webhook": {"url": "ftp://x/y"}}}, "input.webhook.url"),
    ({"input": {"workflow_json": empty_save(), "webhook": {"url": "https://x/y", "extra_params": [1]}}},
     "input.webhook.extra_params"),
    ({"input": {"workflow_json": empty_save(), "convert_output": {"format": "gif"}}}, "input.convert_output.format"),
    ({"input": {"workflow_json": empty_save(), "convert_output": {}}}, "input.convert_output.format"),
    ({"input": {"workflow_json": empty_save(), "convert_output": {"format": "webp", "quality": 0}}},
     "input.convert_output.quality"),
    ({"input": {"workflow_json": empty_save(), "convert_output": {"format": "jpeg", "quality": 101}}},
     "input.convert_output.quality"),
    ({"input": {"workflow_json": empty_save(), "convert_output": {"format": "webp", "lossless": True}}},
     "input.convert_output.lossless"),
    ({"input": {"workflow_json": empty_save(), "base64_outputs": "please"}}, "input.base64_outputs"),
])
async def test_schema_errors_are_422_and_say_where(gateway: Gateway, client: httpx.AsyncClient, body, where):
    r = await post(client, gateway, "/generate", json=body)
    assert r.status_code == 422, r.text
    assert where in r.json()["detail"]


async def test_fields_of_later_versions_are_501_not_ignored(gateway: Gateway, client: httpx.AsyncClient):
    # This gateway has no MODIFIERS_DIR: a modifier is unknown (400), no longer "not yet" (501).
    r = await post(client, gateway, "/generate", json={"input": {"modifier": "Image2Image"}})
    assert r.status_code == 400 and "unknown modifier 'Image2Image'" in r.json()["detail"]
    # A webhook needs a signing secret this gateway was not given: 501, saying so.
    r = await post(client, gateway, "/generate", json={
        "input": {"workflow_json": empty_save(), "webhook": {"url": "https://example.com/hook"}}})
    assert r.status_code == 501 and "input.webhook" in r.json()["detail"] and "WEBHOOK_SECRET" in r.json()["detail"]


async def test_huge_body_is_413(gateway: Gateway, client: httpx.AsyncClient):
    big = b'{"input": {"workflow_json": {"1": {"class_type": "' + b"x" * (33 * 1024 * 1024) + b'"}}}}'
    r = await post(client, gateway, "/generate", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "MAX_BODY_BYTES" in r.json()["detail"]

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b"x" * (1024 * 1024)

    r = await post(client, gateway, "/generate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


async def test_unknown_result_is_404(gateway: Gateway, client: httpx.AsyncClient):
    for path in (f"/result/{uuid.uuid4()}", "/result/nope", f"/result/{uuid.uuid4()}/stream"):
        r = await client.get(gateway.url + path)
        assert r.status_code == 404
        assert "no job with id" in r.json()["detail"]
    r = await client.get(gateway.url + f"/outputs/{uuid.uuid4()}/x.png")
    assert r.status_code == 404
    r = await client.get(gateway.url + "/outputs/a/..%2F..%2Fetc%2Fpasswd")
    assert r.status_code in (400, 404)


async def test_sync_timeout_bounds(gateway: Gateway, client: httpx.AsyncClient):
    body = {"input": {"workflow_json": empty_save()}}
    for bad in ("0", "-1", "abc", "999999"):
        r = await post(client, gateway, f"/generate/sync?timeout={bad}", json=body)
        assert r.status_code == 422, (bad, r.text)
        assert "timeout" in r.json()["detail"]


async def test_request_id_reuse(gateway: Gateway, client: httpx.AsyncClient):
    rid = str(uuid.uuid4())
    body = {"input": {"request_id": rid, "workflow_json": empty_save(8, 8)}}
    first = await post(client, gateway, "/generate/sync", json=body)
    assert first.status_code == 200 and first.json()["id"] == rid
    # The same request again: the same job, not a second run.
    again = await post(client, gateway, "/generate/sync", json=body)
    assert again.status_code == 200
    assert again.json()["id"] == rid and again.json()["created_at"] == first.json()["created_at"]
    # Another request under the same id: conflict.
    other = {"input": {"request_id": rid, "workflow_json": empty_save(9, 9)}}
    r = await post(client, gateway, "/generate", json=other)
    assert r.status_code == 409 and rid in r.json()["detail"]


async def test_body_not_declared_as_json_is_415(gateway: Gateway, client: httpx.AsyncClient):
    # `curl -d` without -H sends a form content type: the answer says what to send instead.
    body = json.dumps({"input": {"workflow_json": empty_save()}})
    for headers in ({"content-type": "application/x-www-form-urlencoded"}, {}):
        r = await post(client, gateway, "/generate/sync", content=body, headers=headers)
        assert r.status_code == 415, r.text
        assert "Content-Type: application/json" in r.json()["detail"]


async def test_service_still_serves_after_bad_inputs(gateway: Gateway, client: httpx.AsyncClient):
    # A volley of bad inputs of every kind at once, then a good job: it is served as usual.
    bad = [post(client, gateway, "/generate", content=b'{"input": ', headers={"content-type": "application/json"}),
           post(client, gateway, "/generate/sync", json={"input": {"workflow_json": []}}),
           post(client, gateway, "/generate", content=b"x" * (33 * 1024 * 1024),
                headers={"content-type": "application/json"}),
           post(client, gateway, "/generate/stream", content=b"{}", headers={"content-type": "text/plain"}),
           post(client, gateway, "/generate/sync?timeout=abc", json={"input": {"workflow_json": empty_save()}})]
    answers = await asyncio.gather(*bad)
    assert [a.status_code for a in answers] == [400, 422, 413, 415, 422]
    r = await post(client, gateway, "/generate/sync", json={"input": {"workflow_json": empty_save(20, 10, 0xABCDEF)}})
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert (await client.get(gateway.url + "/health")).status_code == 200
    assert gateway.proc.proc.poll() is None
