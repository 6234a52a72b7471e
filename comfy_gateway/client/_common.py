"""What the sync and the async client share: configuration, payloads, answers, and turning
server-sent events (read by httpx-sse) into StreamEvents."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from httpx_sse import ServerSentEvent

from .errors import error_for
from .models import JobResult, OutputFile, StreamEvent

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV, KEY_ENV = "COMFY_GATEWAY_URL", "COMFY_GATEWAY_API_KEY"


def resolve(url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """Arguments first, then COMFY_GATEWAY_URL / COMFY_GATEWAY_API_KEY, then the default."""
    url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"gateway URL must start with http:// or https:// (got {url!r})")
    return url, api_key or os.environ.get(KEY_ENV) or None


def headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def payload(workflow: dict[str, Any] | None = None, *, modifier: str | None = None,
            modifications: dict[str, Any] | None = None, request_id: str | None = None,
            include_previews: bool | None = None, timeout: float | None = None,
            **extra: Any) -> dict[str, Any]:
    """The request body. `extra` passes fields of newer gateways (s3, webhook...) through."""
    body: dict[str, Any] = {}
    if workflow is not None:
        body["workflow_json"] = workflow
    if modifier is not None:
        body["modifier"] = modifier
        body["modifications"] = dict(modifications or {})
    for key, value in (("request_id", request_id), ("include_previews", include_previews),
                       ("timeout", timeout)):
        if value is not None:
            body[key] = value
    body.update({k: v for k, v in extra.items() if v is not None})
    return {"input": body}


def is_result(body: Any) -> bool:
    return isinstance(body, dict) and "id" in body and "status" in body and "output" in body


def result_or_raise(response: httpx.Response, *, result_on_error: bool = False) -> JobResult:
    """A result object from a read answer. /generate/sync answers a failed job with 4xx/5xx
    and the result as body: with result_on_error that result is returned, not raised."""
    if response.is_success:
        return JobResult.model_validate(response.json())
    if result_on_error:
        try:
            body = response.json()
        except ValueError:
            body = None
        if is_result(body):
            return JobResult.model_validate(body)
    raise error_for(response)


def same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def download_target(output: OutputFile | str, base_url: str, out_dir: Path,
                    path: Path | None = None) -> tuple[str, Path]:
    """(absolute URL, local file). Without `path`, the file goes to out_dir under the output's
    own name (its subfolders kept), which may never climb out of out_dir."""
    if isinstance(output, OutputFile):
        url, name = output.url, output.filename
    else:
        url, name = output, PurePosixPath(urlsplit(output).path).name
    if not url:
        raise ValueError(f"output {name!r} has no url to download it from")
    url = urljoin(base_url + "/", url)
    if path is not None:
        return url, path
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        rel = PurePosixPath(rel.name or "output")
    return url, out_dir.joinpath(*rel.parts)


def stream_event(sse: ServerSentEvent) -> StreamEvent | None:
    """One server-sent event (as httpx-sse reads them) as a StreamEvent; None for one without
    data."""
    if not sse.data:
        return None
    body = json.loads(sse.data)
    return StreamEvent.model_validate({**body, "event": sse.event or "message", "id": sse.id or None})
