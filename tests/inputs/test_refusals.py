"""Hostile inputs: every one a clear 4xx naming the input and the reason, nothing fetched from a
refused address (the servers there count every request), and the service still serving."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from urllib.parse import quote, urlparse

import httpx
import pytest

from comfy_gateway.net.guard import NetworkPolicy, UrlRefused, check_url

from ..conftest import Gateway, empty_save, png_bytes
from ..support.files_server import FilesServer
from .test_inputs import invert

PATHS = ("/generate", "/generate/sync", "/generate/stream")


def loopback_urls(port: int, port6: int) -> list[str]:
    """127.0.0.1 (where a server listens and counts) in every notation, and names for it."""
    hosts = ["127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "0177.0.0.1",
             "017700000001", "127.000.000.001", "0", "0.0.0.0", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
             "[0:0:0:0:0:ffff:127.0.0.1]", "user:secret@127.0.0.1", "example.com@127.0.0.1"]
    # Names, where this machine's resolver knows them (`localhost.` is unknown to some).
    hosts += [h for h in ("localhost", "LOCALHOST", "localhost.", "ip6-localhost", socket.gethostname())
              if _resolves_to_loopback(h)]
    urls = [f"http://{h}:{port}/x.png" for h in hosts]
    urls += [f"http://[::1]:{port6}/x.png", f"http://[::]:{port6}/x.png", f"HTTPS://127.0.0.1:{port}/x.png",
             f"http://127.0.0.1:{port}/redirect?to=http://example.com/x.png",
             f"http://127.0.0.1:{port}/x.png?X-Amz-Signature=secret"]
    return urls


def _resolves_to_loopback(name: str) -> bool:
    try:
        return all(ipaddress.ip_address(a[4][0]).is_loopback
                   for a in socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP))
    except OSError:
        return False


# Never sent anywhere: each is first shown to be refused in this process, before a literal
# check is even needed, so a broken guard can send no traffic to a private network.
PRIVATE = ["http://10.0.0.1/x.png", "http://172.16.5.4/x.png", "http://192.168.1.1/x.png",
           "http://169.254.169.254/latest/meta-data/", "http://0xa9fea9fe/x.png", "http://2852039166/x.png",
           "http://100.64.0.1/x.png", "http://[fd00::1]/x.png", "http://[fe80::1]/x.png",
           "http://[::ffff:10.0.0.1]/x.png", "http://224.0.0.1/x.png", "http://255.255.255.255/x.png",
           # IPv6 forms that carry an IPv4 address a network may deliver them to: NAT64, 6to4,
           # IPv4-compatible; and ranges Python counts as global that are not.
           "http://[64:ff9b::a9fe:a9fe]/x.png", "http://[2002:a9fe:a9fe::]/x.png", "http://[::a9fe:a9fe]/x.png",
           "http://[64:ff9b:1::1]/x.png", "http://[fec0::1]/x.png"]
SCHEMES = ["file:///etc/passwd", "FILE:///etc/passwd", "file:/etc/passwd", "ftp://127.0.0.1/x.png",
           "gopher://127.0.0.1:70/_x", "dict://127.0.0.1:11211/stats"]


async def refused(client: httpx.AsyncClient, gw: Gateway, workflow: dict, path: str = "/generate/sync") -> dict:
    r = await client.post(gw.url + path, json={"input": {"workflow_json": workflow}})
    assert r.status_code == 400, (path, r.text)
    error = r.json()["error"]
    assert error["kind"] == "input" and error["type"] == "input_refused", error
    assert error["message"].startswith("node 1 input 'image'"), error["message"]
    return error


async def test_loopback_in_every_notation_is_refused_unfetched(guarded_gateway: Gateway, client: httpx.AsyncClient,
                                                               files: FilesServer, forbidden6: FilesServer):
    before = files.total_hits
    for i, url in enumerate(loopback_urls(files.port, forbidden6.port)):
        error = await refused(client, guarded_gateway, invert(url), PATHS[i % 3])
        assert "not a public address" in error["message"], (url, error["message"])
        assert "secret" not in error["message"]  # credentials and query strings are never echoed
        assert "secret" not in guarded_gateway.log()  # nor logged
    assert files.total_hits == before and forbidden6.total_hits == 0


async def test_private_link_local_and_metadata_addresses_are_refused(guarded_gateway: Gateway,
                                                                     client: httpx.AsyncClient):
    policy = NetworkPolicy.parse("")
    for i, url in enumerate(PRIVATE):
        with pytest.raises(UrlRefused):
            check_url(url, policy)  # in this process first: nothing goes out if the guard broke
        error = await refused(client, guarded_gateway, invert(url), PATHS[i % 3])
        assert "is not a public address" in error["message"]


async def test_other_schemes_are_refused(guarded_gateway: Gateway, client: httpx.AsyncClient):
    for url in SCHEMES:
        error = await refused(client, guarded_gateway, invert(url))
        assert "only http and https URLs, data: URIs and asset:// references" in error["message"], error


async def test_a_modifier_input_is_refused_by_its_name(guarded_gateway: Gateway, client: httpx.AsyncClient,
                                                       files: FilesServer):
    before = files.total_hits
    r = await client.post(guarded_gateway.url + "/generate", json={
        "input": {"modifier": "ImageEdit", "modifications": {"image": f"http://localhost:{files.port}/a.png"}}})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert message.startswith("node 1 input 'image' from modifications.image (http://localhost:") and "host 'localhost' resolves to 127.0.0.1" in message and "not a public address" in message
    assert files.total_hits == before


async def test_redirects_to_refused_addresses(asset_gateway: Gateway, client: httpx.AsyncClient, files: FilesServer,
                                              forbidden: FilesServer, forbidden6: FilesServer, served):
    target = served(png_bytes(4, 4, (9, 9, 9)))
    hops = lambda to, n: to if n == 0 else hops(f"{files.url}/redirect?to={quote(to, safe='')}", n - 1)  # noqa: E731
    cases = [
        (hops(forbidden.url + "/x.png", 1), "(redirected): address 127.0.0.2 is not a public address"),
        (hops(forbidden6.url + "/x.png", 1), "(redirected): address ::1 is not a public address"),
        (hops(f"http://localhost:{forbidden.port}/x.png", 2), None),  # localhost is 127.0.0.1: allowed...
        (hops("file:///etc/passwd", 1), "only http and https are allowed, not 'file'"),
        (hops(target, 3), "more than 2 redirects (INPUT_MAX_REDIRECTS)"),
    ]
    for url, why in cases:
        r = await client.post(asset_gateway.url + "/generate/sync", json={"input": {"workflow_json": invert(url)}})
        if why is None:  # ...and nothing listens on 127.0.0.1 at that port: unavailable, not refused
            assert r.status_code == 422 and r.json()["error"]["type"] == "input_unavailable", r.text
            continue
        assert r.status_code == 400, (url, r.text)
        assert why in r.json()["error"]["message"], r.json()["error"]["message"]
    assert forbidden.total_hits == 0 and forbidden6.total_hits == 0
    assert files.hits[urlparse(target).path] == 0
    # Within the limit, a redirect between allowed addresses is followed.
    ok = await client.post(asset_gateway.url + "/generate/sync", json={"input": {"workflow_json": invert(hops(target, 2))}})
    assert ok.status_code == 200, ok.text


async def test_oversized_slow_and_wrong_bodies(asset_gateway: Gateway, client: httpx.AsyncClient,
                                               files: FilesServer, served):
    big = served(b"\0" * 300001)
    cases = [
        (big, 413, "input_too_large", "300001 bytes, over the limit of 300000 bytes (MAX_INPUT_BYTES)"),
        (files.url + "/chunked-big", 413, "input_too_large", "over the limit of 300000 bytes"),
        (files.url + "/slow", 422, "input_unavailable", "not fetched within 3 s (INPUT_TIMEOUT"),
        (served(b"<html><body>hello</body></html>", "text/html"), 415, "input_type",
         "expected an image, but its content is text/html"),
        (served(b"<html>a page</html>", "image/png", ".jpg"), 415, "input_type", "its content is text/html"),
        (served(b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n<<>>\nendobj\n", "application/pdf", ".pdf"), 415, "input_type",
         "application/pdf"),
        (files.url + "/missing.png", 422, "input_unavailable", "the server answered HTTP 404"),
        ("data:image/png;base64,%%%notbase64", 422, "input_invalid", "does not decode"),
        ("data:image/png;base64," + base64.b64encode(b"\0" * 400000).decode(), 413, "input_too_large", "MAX_INPUT_BYTES"),
        ("data:text/plain,hello", 415, "input_type", "text/plain"),
        ("http://[::1/x.png", 422, "input_invalid", "not a valid URL"),
        ("http://127.0.0.1:99999/x.png", 422, "input_invalid", "not a valid URL: Port out of range"),
        ("http://a..b/x.png", 422, "input_invalid", "not a valid URL"),
    ]
    for url, status, kind, why in cases:
        r = await client.post(asset_gateway.url + "/generate/sync", json={"input": {"workflow_json": invert(url)}})
        assert r.status_code == status, (url[:80], r.text)
        error = r.json()["error"]
        assert error["type"] == kind and why in error["message"], (url[:80], error)
        assert error["message"].startswith("node 1 input 'image'")


async def test_service_still_serves_after_all_that(asset_gateway: Gateway, guarded_gateway: Gateway,
                                                   client: httpx.AsyncClient, files: FilesServer, served):
    # Refused, too large, too slow and wrong inputs at once, on both gateways...
    volley = [(asset_gateway, served(b"\0" * 300001)), (asset_gateway, files.url + "/slow"),
              (asset_gateway, served(b"<html>x</html>", "text/html")), (guarded_gateway, served(png_bytes(4, 4, (0, 0, 255)))),
              (guarded_gateway, "http://127.0.0.1:9/x.png")]
    answers = await asyncio.gather(*(client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": invert(url)}})
                                     for gw, url in volley))
    assert [a.status_code for a in answers] == [413, 422, 415, 400, 400], [a.text for a in answers]
    # ...and both go on serving, with no download left running.
    for gw in (asset_gateway, guarded_gateway):
        r = await client.post(gw.url + "/generate/sync", json={"input": {"workflow_json": empty_save(6, 6, 0x00FF00)}})
        assert r.status_code == 200 and r.json()["status"] == "completed"
        assert (await client.get(gw.url + "/health")).status_code == 200
        assert (await client.get(gw.url + "/queue-info")).json()["inputs"]["downloads_in_flight"] == 0
