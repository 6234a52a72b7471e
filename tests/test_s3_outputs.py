"""Outputs to S3, end to end: a real ComfyUI makes them, the gateway streams them to a real
S3-compatible server (moto, over HTTP), and what lands there is byte for byte what ComfyUI made."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
from PIL import Image

from .conftest import Gateway, empty_save
from .support.procs import free_port
from .support.s3server import S3Server
from .support.sse import collect
from .support.wait import until


async def view_bytes(client: httpx.AsyncClient, comfyui: str, job_id: str, output: dict) -> bytes:
    """The file as ComfyUI itself serves it (saved outputs lie in the job's subfolder, previews
    at the top of the temp folder)."""
    subfolder = job_id if output["type"] == "output" else ""
    r = await client.get(comfyui + "/view", params={"filename": output["filename"], "subfolder": subfolder,
                                                   "type": output["type"]})
    assert r.status_code == 200
    return r.content


def noise_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buf, format="PNG")
    return buf.getvalue()


async def sync(client: httpx.AsyncClient, gateway: Gateway, **inp) -> tuple[int, dict]:
    r = await client.post(gateway.url + "/generate/sync", json={"input": inp})
    return r.status_code, r.json()


async def test_env_bucket_gets_every_output_byte_identical(s3_gateway: Gateway, s3_open: S3Server, comfyui: str,
                                                           client: httpx.AsyncClient):
    status, result = await sync(client, s3_gateway, workflow_json=empty_save(72, 24, 0x336699, "s3env"))
    assert status == 200 and result["status"] == "completed", result
    out = result["output"][0]
    job = result["id"]
    assert out["s3_key"] == f"gw/{job}/{out['filename']}"
    # The url is a presigned GET of that object, valid S3_URL_EXPIRY seconds (default 3600).
    url = urlparse(out["url"])
    assert out["url"].startswith(f"{s3_open.url}/env-bucket/gw/{job}/")
    query = parse_qs(url.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Expires"] == ["3600"]
    made = await view_bytes(client, comfyui, job, out)
    downloaded = await client.get(out["url"])
    assert downloaded.status_code == 200 and downloaded.content == made
    assert s3_open.get("env-bucket", out["s3_key"]) == made
    assert out["size_bytes"] == len(made)
    # Uploaded, so not kept on disk (KEEP_LOCAL_OUTPUTS is off).
    assert out["local_path"] is None
    assert not (s3_gateway.output_dir / job).exists()
    assert (await client.get(f"{s3_gateway.url}/outputs/{job}/{out['filename']}")).status_code == 404
    head = s3_open.client().head_object(Bucket="env-bucket", Key=out["s3_key"])
    assert head["ContentType"] == "image/png"


async def test_request_bucket_with_real_credentials(s3_gateway: Gateway, s3_auth: S3Server, s3_open: S3Server,
                                                    comfyui: str, client: httpx.AsyncClient):
    status, result = await sync(client, s3_gateway, workflow_json=empty_save(16, 16, 0xFF00FF, "own"),
                                s3=s3_auth.request_config("auth-bucket"), include_previews=True)
    assert status == 200 and result["status"] == "completed", result
    job = result["id"]
    out = result["output"][0]
    assert s3_auth.keys("auth-bucket", f"gw/{job}/") == [out["s3_key"]]
    assert s3_auth.get("auth-bucket", out["s3_key"]) == await view_bytes(client, comfyui, job, out)
    # The request's bucket replaced the gateway's: nothing of this job in the env bucket.
    assert s3_open.keys("env-bucket", f"gw/{job}/") == []
    # A presigned URL names the key id (SigV4 needs it), never the secret.
    assert s3_auth.access_key_id in out["url"] and s3_auth.secret_access_key not in out["url"]


async def test_large_output_goes_up_in_parts(s3_gateway: Gateway, s3_open: S3Server, comfyui: str,
                                             client: httpx.AsyncClient):
    big = noise_png(1600, 1600)  # random pixels: about 7.7 MB even as PNG, over S3_PART_SIZE (5 MiB)
    name = f"noise-{uuid.uuid4().hex[:8]}.png"
    r = await client.post(comfyui + "/upload/image", files={"image": (name, big, "image/png")})
    assert r.status_code == 200
    wf = {"1": {"class_type": "LoadImage", "inputs": {"image": r.json()["name"]}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "big"}}}
    status, result = await sync(client, s3_gateway, workflow_json=wf)
    assert status == 200 and result["status"] == "completed", result
    out = result["output"][0]
    made = await view_bytes(client, comfyui, result["id"], out)
    assert len(made) > 5 * 1024 * 1024 and out["size_bytes"] == len(made)
    assert s3_open.get("env-bucket", out["s3_key"]) == made
    # An S3 multipart object's ETag ends in -<number of parts>.
    etag = s3_open.client().head_object(Bucket="env-bucket", Key=out["s3_key"])["ETag"]
    assert etag.strip('"').endswith("-2")


async def _storage_failure(client, gateway, s3_cfg) -> dict:
    status, result = await sync(client, gateway, workflow_json=empty_save(8, 8, 0x010203, "fail"), s3=s3_cfg)
    assert status == 502, result
    assert result["status"] == "failed" and result["error"]["kind"] == "storage"
    # Nothing is lost: the output stays on disk, listed with its local url.
    out = result["output"][0]
    assert Path(out["local_path"]).is_file() and out["s3_key"] is None
    assert result["error"]["details"]["local_path"] == out["local_path"]
    assert (await client.get(out["url"])).status_code == 200
    return result


async def test_wrong_secret_fails_clearly(s3_gateway: Gateway, s3_auth: S3Server, client: httpx.AsyncClient):
    wrong = "wrong-" + uuid.uuid4().hex
    result = await _storage_failure(client, s3_gateway, s3_auth.request_config("auth-bucket", secret_access_key=wrong))
    err = result["error"]
    assert err["type"] == "SignatureDoesNotMatch"
    assert "s3://auth-bucket/" in err["message"] and "check secret_access_key" in err["message"]
    assert wrong not in str(result) and wrong not in s3_gateway.log()


async def test_unknown_key_fails_clearly(s3_gateway: Gateway, s3_auth: S3Server, client: httpx.AsyncClient):
    result = await _storage_failure(client, s3_gateway, s3_auth.request_config("auth-bucket", access_key_id="AKIANOBODY0000000000"))
    assert result["error"]["type"] == "InvalidAccessKeyId"
    assert "check access_key_id" in result["error"]["message"]


async def test_missing_bucket_fails_clearly(s3_gateway: Gateway, s3_auth: S3Server, client: httpx.AsyncClient):
    result = await _storage_failure(client, s3_gateway, s3_auth.request_config("no-such-bucket"))
    assert result["error"]["type"] == "NoSuchBucket"
    assert "s3://no-such-bucket/" in result["error"]["message"] and "does not exist" in result["error"]["message"]


async def test_endpoint_down_fails_after_bounded_retry(s3_gateway: Gateway, s3_auth: S3Server, client: httpx.AsyncClient):
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = await _storage_failure(client, s3_gateway, s3_auth.request_config("auth-bucket", endpoint_url=down))
    assert result["error"]["type"] == "endpoint_unreachable"
    assert "did not answer" in result["error"]["message"]


async def test_keep_local_and_public_base_url(comfyui: str, gateway_factory, s3_open: S3Server, client: httpx.AsyncClient):
    bucket = s3_open.create_public_bucket(f"public-{uuid.uuid4().hex[:8]}")
    gw = gateway_factory(comfyui, S3_BUCKET_NAME=bucket, S3_ENDPOINT_URL=s3_open.url,
                         S3_ACCESS_KEY_ID=s3_open.access_key_id, S3_SECRET_ACCESS_KEY=s3_open.secret_access_key,
                         S3_PUBLIC_BASE_URL=f"{s3_open.url}/{bucket}", KEEP_LOCAL_OUTPUTS="true")
    status, result = await sync(client, gw, workflow_json=empty_save(10, 10, 0xABCDEF, "pub"))
    assert status == 200, result
    out = result["output"][0]
    job = result["id"]
    # No prefix set: the key is <job id>/<filename>; the url is the public base plus the key.
    assert out["s3_key"] == f"{job}/{out['filename']}"
    assert out["url"] == f"{s3_open.url}/{bucket}/{out['s3_key']}"
    made = await view_bytes(client, comfyui, job, out)
    assert (await client.get(out["url"])).content == made
    # Kept on disk and still served by the gateway.
    assert Path(out["local_path"]).read_bytes() == made
    assert (await client.get(f"{gw.url}/outputs/{job}/{out['filename']}")).content == made


async def test_stream_and_result_show_s3_urls(s3_gateway: Gateway, client: httpx.AsyncClient):
    stream = await collect(client, "POST", s3_gateway.url + "/generate/stream",
                           json_body={"input": {"workflow_json": empty_save(8, 8, 0x0, "sse")}})
    result = stream.events[-1].data["result"]
    assert result["status"] == "completed"
    again = (await client.get(f"{s3_gateway.url}/result/{result['id']}")).json()
    assert again["output"][0]["url"] == result["output"][0]["url"]
    assert "X-Amz-Signature" in result["output"][0]["url"]


async def _gone(client: httpx.AsyncClient, url: str) -> bool:
    return (await client.get(url)).status_code == 404


async def test_local_outputs_expire_after_their_ttl(comfyui: str, gateway_factory, client: httpx.AsyncClient):
    gw = gateway_factory(comfyui, LOCAL_OUTPUT_TTL="4")
    status, result = await sync(client, gw, workflow_json=empty_save(6, 6, 0x445566, "ttl"))
    assert status == 200
    out = result["output"][0]
    first = await client.get(out["url"])  # well inside its 4 s, however busy the machine
    assert first.status_code == 200
    # The sweeper deletes the job's folder once it is older than its TTL.
    await until(lambda: _gone(client, out["url"]), "the output is swept", timeout=60)
    assert not (gw.output_dir / result["id"]).exists()
    # The result itself is kept (RESULT_TTL), still listing the file.
    assert (await client.get(f"{gw.url}/result/{result['id']}")).json()["output"][0]["filename"] == out["filename"]
