"""Log lines as an operator reads them from the gateway's output: JSON lines (LOG_FORMAT=json)
with the job id on every line about a job, or text lines naming it."""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import urlsplit

import httpx

from comfy_gateway.client import Client

from .conftest import empty_save
from .support.procs import Proc, free_port
from .test_cli import slow


def test_json_lines_carry_the_job_id(fake_factory, gateway_factory):
    fake = fake_factory()
    gw = gateway_factory(fake.url, LOG_FORMAT="json")
    with Client(gw.url) as client:
        job = client.sync(slow(0.1, 2, prefix="logged"))
        assert job.ok
        httpx.get(f"{gw.url}/result/{job.id}")
        fake.control(hang=True)
        held = client.submit(empty_save(prefix="held"))
        client.cancel(held.id)
        fake.control(hang=False)
    lines = [json.loads(line) for line in gw.log().splitlines() if line.strip()]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    about = [line for line in lines if line.get("job_id") == job.id]
    loggers = {line["logger"] for line in about}
    # Stage code never passes the id: the worker's context variable puts it on the line.
    assert {"comfy_gateway.pipeline.generation", "comfy_gateway.pipeline.postprocess", "comfy_gateway.jobs"} <= loggers
    assert any(line["message"].startswith("saved logged_00001_.png (") for line in about)
    backend = urlsplit(fake.url).netloc  # the backend's name: where the prompt ran
    assert any(line["message"] == f"{backend} ran the prompt: 1 output(s) to fetch" for line in about), about
    assert any(line["message"].startswith("completed after ") for line in about)
    # uvicorn's access lines too: the submission's own, and a read of its result.
    access = [line for line in about if line["logger"] == "uvicorn.access"]
    assert {(a["method"], a["path"].split("?")[0], a["status"]) for a in access} >= {
        ("POST", "/generate/sync", 200), ("GET", f"/result/{job.id}", 200)}
    # Every line that names a job carries that job's id.
    for line in lines:
        for jid in (job.id, held.id):
            if jid in line["message"]:
                assert line.get("job_id") == jid, line
    assert any(line.get("job_id") == held.id and line["message"].startswith("cancelled") for line in lines)
    assert any(line["logger"] == "uvicorn.error" and line["message"].startswith("Uvicorn running on")
               for line in lines)


def test_text_lines_name_the_job(fake_factory, gateway_factory):
    fake = fake_factory()
    gw = gateway_factory(fake.url)  # LOG_FORMAT defaults to text
    with Client(gw.url) as client:
        job = client.sync(empty_save(prefix="txt"))
    saved = [line for line in gw.log().splitlines() if "comfy_gateway.pipeline.postprocess" in line]
    assert saved and f"[job {job.id}] saved txt_00001_.png" in saved[0]


def test_an_unknown_log_format_is_refused_at_start(tmp_path):
    env = {**os.environ, "LOG_FORMAT": "xml", "API_PORT": str(free_port())}
    proc = Proc([sys.executable, "-m", "comfy_gateway.cli", "serve"], env, tmp_path / "bad.log", cwd=tmp_path)
    assert proc.proc.wait(30) == 2
    proc.stop()
    assert "invalid configuration: LOG_FORMAT: Value error, LOG_FORMAT is 'text' or 'json'" in proc.output()
