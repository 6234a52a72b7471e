"""Downloads that race the sweeper (api/held_file.py): a file unlinked after the answer's
headers went out is still sent whole, ranges included; one gone before the answer starts is
the API's own 404, never a 200 with no body."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from comfy_gateway.api.held_file import HeldFileResponse
from comfy_gateway.api.jsonresp import JSONResponse

DATA = bytes(range(256)) * 1024  # 256 KiB: several of FileResponse's 64 KiB chunks


def _scope(headers: dict[str, str] | None = None) -> dict:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http", "method": "GET", "path": "/f", "headers": raw, "asgi": {"spec_version": "2.4"},
            "extensions": {"http.response.pathsend": {}}}


async def _answer(response, scope: dict, on_start=None) -> tuple[int, dict[str, str], bytes]:
    """Run the response as a server would; `on_start` runs once its headers are sent."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.start" and on_start is not None:
            on_start()
        assert message["type"] != "http.response.pathsend", "the file must not be sent again by its path"

    await response(scope, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert not sent[-1].get("more_body", False)
    return start["status"], headers, body


def _gone() -> JSONResponse:
    return JSONResponse({"detail": "no output 'a.png' for job 'j'"}, status_code=404)


@pytest.fixture
def output(tmp_path: Path) -> Path:
    path = tmp_path / "a.png"
    path.write_bytes(DATA)
    return path


async def test_a_file_swept_after_the_headers_went_out_is_still_sent_whole(output: Path):
    status, headers, body = await _answer(HeldFileResponse(output, gone=_gone()), _scope(),
                                          on_start=lambda: os.unlink(output))
    assert not output.exists()
    assert status == 200 and headers["content-length"] == str(len(DATA))
    assert body == DATA


async def test_a_range_of_a_swept_file_is_sent_from_the_handle_held(output: Path):
    status, headers, body = await _answer(HeldFileResponse(output, gone=_gone()), _scope({"Range": "bytes=1000-1999"}),
                                          on_start=lambda: os.unlink(output))
    assert status == 206 and headers["content-range"] == f"bytes 1000-1999/{len(DATA)}"
    assert body == DATA[1000:2000]


async def test_several_ranges_of_a_swept_file(output: Path):
    status, headers, body = await _answer(HeldFileResponse(output, gone=_gone()),
                                          _scope({"Range": "bytes=0-9,70000-70009"}),
                                          on_start=lambda: os.unlink(output))
    assert status == 206 and headers["content-type"].startswith("multipart/byteranges")
    assert DATA[:10] in body and DATA[70000:70010] in body


async def test_a_file_gone_before_the_answer_starts_is_the_apis_404(output: Path):
    response = HeldFileResponse(output, gone=_gone())
    os.unlink(output)
    status, headers, body = await _answer(response, _scope())
    assert status == 404 and headers["content-type"] == "application/json"
    assert orjson.loads(body) == {"detail": "no output 'a.png' for job 'j'"}


async def test_a_folder_in_place_of_the_file_is_a_404(tmp_path: Path):
    status, _, body = await _answer(HeldFileResponse(tmp_path, gone=_gone()), _scope())
    assert status == 404 and b"no output" in body


async def test_head_sends_the_headers_only(output: Path):
    scope = {**_scope(), "method": "HEAD"}
    status, headers, body = await _answer(HeldFileResponse(output, gone=_gone()), scope)
    assert status == 200 and headers["content-length"] == str(len(DATA)) and body == b""
