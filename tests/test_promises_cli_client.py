"""README promises about the CLI, the Python client and the server's signals that no other test
held them to: `-` reads the workflow from stdin, Ctrl-C exits 130 leaving the job running, the
client sends its key only to the gateway's own origin, a second signal stops at once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import httpx
from aiohttp import web

from comfy_gateway.client import AsyncClient, Client

from .conftest import empty_save
from .support.cli import run_cli, start_cli
from .support.wait import until
from .test_cli import slow


def test_run_reads_the_workflow_from_stdin(fake_factory, gateway_factory, tmp_path: Path):
    gw = gateway_factory(fake_factory().url)
    out = tmp_path / "out"
    r = run_cli("run", "-", "--out", str(out), url=gw.url, stdin=json.dumps(empty_save(12, 6, 0x0000FF, "stdin")))
    assert r.returncode == 0, r.stderr
    assert [Path(line).name for line in r.stdout.splitlines()] == ["stdin_00001_.png"]


def test_ctrl_c_exits_130_and_the_job_keeps_running(fake_factory, gateway_factory, tmp_path: Path):
    fake = fake_factory()
    gw = gateway_factory(fake.url)
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(slow(120, 1200, prefix="kept")))
    proc = start_cli("run", str(wf), "--out", str(tmp_path / "out"), url=gw.url)
    try:
        gateway = Client(gw.url)

        def running():  # the CLI is following a job whose slow node runs
            jobs = gateway.jobs()
            return jobs and jobs[0].progress is not None and jobs[0].progress.node == "2" and jobs[0]

        deadline = time.monotonic() + 60
        while not (job := running()):
            assert time.monotonic() < deadline and proc.poll() is None, "the job never ran"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert proc.wait(30) == 130
        said = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert f"job {job.id} keeps running on the gateway" in said
    assert gateway.result(job.id).status == "generating"  # the CLI left it running
    assert gateway.cancel(job.id).status == "cancelled"


async def test_the_client_sends_its_key_only_to_the_gateways_origin(fake_factory, gateway_factory, tmp_path: Path):
    gw = gateway_factory(fake_factory().url, API_KEYS="own-key")
    seen: list[str | None] = []

    async def elsewhere(request: web.Request) -> web.Response:  # e.g. a signed S3 URL's host
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=b"elsewhere", content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{name}", elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    other = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        async with AsyncClient(gw.url, api_key="own-key") as client:
            result = await client.sync(empty_save(prefix="own"))
            assert result.ok
            own = await client.download(result.output[0], tmp_path / "a")  # needs the key: 401 without
            assert own.read_bytes()[:4] == b"\x89PNG"
            await client.download(other + "/x.bin", tmp_path / "a")
        with Client(gw.url, api_key="own-key") as sync_client:
            await asyncio.to_thread(sync_client.download, other + "/y.bin", tmp_path / "b")
        assert seen == [None, None]
        assert (tmp_path / "b" / "y.bin").read_bytes() == b"elsewhere"
    finally:
        await runner.cleanup()


async def test_a_second_signal_stops_at_once(fake_factory, gateway_factory, client: httpx.AsyncClient):
    fake = fake_factory()
    gw = gateway_factory(fake.url, SHUTDOWN_GRACE="120")
    job = (await client.post(gw.url + "/generate", json={"input": {"workflow_json": slow(120, 120)}})).json()["id"]
    await until(lambda: fake.stats()["queue_remaining"] >= 1, "the job runs in ComfyUI")
    os.kill(gw.proc.proc.pid, signal.SIGTERM)

    async def draining() -> bool:
        r = await client.post(gw.url + "/generate", json={"input": {"workflow_json": empty_save()}})
        return r.status_code == 503

    await until(draining, "the gateway drains")
    assert gw.proc.proc.poll() is None  # the job in flight holds it for up to 120 s...
    os.kill(gw.proc.proc.pid, signal.SIGTERM)
    # ...but a second signal ends it now.
    assert await asyncio.to_thread(gw.proc.proc.wait, 20) is not None
    assert job
