"""`comfy-gateway run | result | cancel` as a user runs them: a real process against a real
gateway process in front of the fake ComfyUI (and one run against the real ComfyUI)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from comfy_gateway.client import Client

from .conftest import Fake, Gateway, empty_save
from .support.cli import run_cli, start_cli
from .support.procs import free_port


def slow(seconds: float, steps: int, prefix: str = "slow") -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 40, "height": 30, "batch_size": 1, "color": 0x00FF00}},
        "2": {"class_type": "FakeSlow", "inputs": {"images": ["1", 0], "seconds": seconds, "steps": steps}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


@pytest.fixture(scope="module")
def shared_fake(module_fake_factory) -> Fake:
    return module_fake_factory()


@pytest.fixture
def fake(shared_fake: Fake) -> Fake:
    """One fake for the module, reset to a clean state for each test."""
    return shared_fake.reset()


@pytest.fixture(scope="module")
def shared_gw(shared_fake: Fake, module_gateway_factory) -> Gateway:
    return module_gateway_factory(shared_fake.url, GENERATION_WORKERS="1")


@pytest.fixture
def gw(fake: Fake, shared_gw: Gateway) -> Gateway:
    """The module's gateway, in front of the freshly reset fake."""
    return shared_gw


def write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_run_shows_progress_per_node_and_downloads_the_outputs(gw: Gateway, tmp_path: Path):
    wf = write(tmp_path, "wf.json", slow(0.3, 4))
    out = tmp_path / "out"
    r = run_cli("run", str(wf), "--out", str(out), url=gw.url)
    assert r.returncode == 0, r.stderr
    saved = [Path(line) for line in r.stdout.splitlines()]
    assert saved == [(out / "slow_00001_.png").resolve()]
    with Image.open(saved[0]) as img:
        assert img.size == (40, 30)  # FakeSlow passes the image through
    # What the user saw: each status, a bar per node with its steps, and where the files went.
    assert "generating" in r.stderr and "postprocessing" in r.stderr
    assert "node 2 FakeSlow" in r.stderr and "4/4" in r.stderr
    assert "node 3 SaveImage" in r.stderr and "all nodes" in r.stderr and "3/3" in r.stderr
    assert f"1 output(s) saved to {out}" in r.stderr


def test_run_shows_the_queue_position_while_waiting(fake: Fake, gw: Gateway, tmp_path: Path):
    fake.control(hang=True)  # ComfyUI takes the first prompt but runs nothing: the next job waits
    with Client(gw.url) as client:
        blocker = client.submit(empty_save(prefix="blocker"))
        proc = start_cli("run", str(write(tmp_path, "wf.json", empty_save(prefix="waiter"))), "--out",
                         str(tmp_path / "out"), url=gw.url)
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "waiting in the generation queue: position 1 of 1 (next in line" in line:
                break
        else:
            pytest.fail("no queue position shown:\n" + "".join(seen))
        fake.control(hang=False)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert rest.strip().endswith("waiter_00001_.png")
        assert client.wait(blocker.id).status == "completed"


def test_async_then_result_wait_downloads(gw: Gateway, tmp_path: Path):
    r = run_cli("run", str(write(tmp_path, "wf.json", slow(0.2, 2))), "--async", "--priority", "3", url=gw.url)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    assert f"comfy-gateway result {job_id} --wait" in r.stderr
    r = run_cli("result", job_id, "--wait", "--json", cwd=tmp_path, url=gw.url)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["id"] == job_id and result["status"] == "completed" and result["priority"] == 3
    # Without --out the files go to ./comfy-outputs/<id>/ of the working directory.
    assert (tmp_path / "comfy-outputs" / job_id / "slow_00001_.png").is_file()
    again = run_cli("result", job_id, "--out", str(tmp_path / "again"), url=gw.url)
    assert again.returncode == 0 and again.stdout.strip() == str((tmp_path / "again" / "slow_00001_.png").resolve())


def test_result_of_a_running_job_without_wait_says_so(fake: Fake, gw: Gateway):
    fake.control(hang=True)
    with Client(gw.url) as client:
        job = client.submit(empty_save(prefix="held"))
        r = run_cli("result", job.id, url=gw.url)
        assert r.returncode == 4
        assert f"job {job.id} is " in r.stderr and "--wait" in r.stderr
        c = run_cli("cancel", job.id, url=gw.url)
        assert c.returncode == 0 and f"cancelled job {job.id}" in c.stderr
        assert client.result(job.id).status == "cancelled"
        again = run_cli("cancel", job.id, url=gw.url)
        assert again.returncode == 1 and "already ended: cancelled" in again.stderr
        shown = run_cli("result", job.id, url=gw.url)
        assert shown.returncode == 1 and f"job {job.id} cancelled: cancelled by the client" in shown.stderr


def test_a_rejected_workflow_prints_comfyuis_node_errors(gw: Gateway, tmp_path: Path):
    wf = empty_save()
    del wf["2"]["inputs"]["images"]
    r = run_cli("run", str(write(tmp_path, "bad.json", wf)), url=gw.url)
    assert r.returncode == 1
    assert "failed: ComfyUI rejected the workflow" in r.stderr
    assert "node 2 (SaveImage):" in r.stderr
    assert "- Required input is missing: images [input 'images']" in r.stderr


def test_a_node_that_raises_prints_the_exception(gw: Gateway, tmp_path: Path):
    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
          "2": {"class_type": "FakeFail", "inputs": {"images": ["1", 0], "message": "the GPU caught fire"}},
          "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}
    r = run_cli("run", str(write(tmp_path, "fail.json", wf)), url=gw.url)
    assert r.returncode == 1
    assert "node 2 (FakeFail) raised RuntimeError: the GPU caught fire" in r.stderr


def test_modifier_request_reaches_the_gateway_and_its_refusal_is_shown(gw: Gateway):
    r = run_cli("run", "--modifier", "Text2Image", "--set", "prompt=a red fox", "--set", "steps=30",
                "--set", "size=[512, 768]", url=gw.url)
    # The gateway validated the body (a malformed one would be a 422) and serves no modifier of
    # that name: the CLI says so in the gateway's words, nothing more.
    assert r.returncode == 3
    assert r.stderr.strip().startswith("error (HTTP 400): input.modifier: unknown modifier 'Text2Image'")


def test_modifier_values_are_json_when_they_parse():
    from comfy_gateway.client._common import payload
    from comfy_gateway.commands.inputs import parse_sets

    sets = parse_sets(["prompt=a red fox", "steps=30", "cfg=7.5", "hires=true", "size=[512, 768]",
                       "seed=null", 'name="42"', "expr=a=b"])
    assert payload(modifier="Text2Image", modifications=sets) == {"input": {
        "modifier": "Text2Image", "modifications": {
            "prompt": "a red fox", "steps": 30, "cfg": 7.5, "hires": True, "size": [512, 768], "seed": None,
            "name": "42", "expr": "a=b"}}}


def test_bad_command_lines_and_files_exit_2_with_a_reason(gw: Gateway, tmp_path: Path):
    cases = [
        (["run", str(tmp_path / "missing.json")], "cannot read the workflow"),
        (["run", str(write(tmp_path, "x.json", "{not json"))], "is not valid JSON: Expecting property name"),
        (["run", str(write(tmp_path, "ui.json", {"nodes": [], "links": []}))], "ComfyUI's UI format"),
        (["run", "--modifier", "M", "--set", "novalue"], "--set takes key=value"),
        (["run", str(write(tmp_path, "w.json", empty_save())), "--modifier", "M"], "exactly one"),
        (["run", str(tmp_path / "w.json"), "--set", "a=1"], "--set goes with --modifier"),
        (["run", str(tmp_path / "w.json"), "--url", "ftp://x"], "must start with http:// or https://"),
    ]
    for args, message in cases:
        r = run_cli(*args, url=gw.url)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr, (args, r.stderr)


def test_gateway_refusals_and_absence_exit_3(fake: Fake, gateway_factory, tmp_path: Path):
    gw = gateway_factory(fake.url, API_KEYS="sesame")
    wf = str(write(tmp_path, "w.json", empty_save()))
    r = run_cli("run", wf, url=gw.url)
    assert r.returncode == 3 and "error (HTTP 401): missing or wrong API key" in r.stderr
    ok = run_cli("run", wf, "--out", str(tmp_path / "o"), url=gw.url, api_key="sesame")
    assert ok.returncode == 0, ok.stderr
    unknown = run_cli("result", "no-such-job", url=gw.url, api_key="sesame")
    assert unknown.returncode == 3 and "error (HTTP 404): no job with id 'no-such-job'" in unknown.stderr
    nobody = run_cli("run", wf, url=f"http://127.0.0.1:{free_port()}")
    assert nobody.returncode == 3 and "cannot reach the gateway at http://127.0.0.1:" in nobody.stderr


def test_run_against_the_real_comfyui(gateway: Gateway, tmp_path: Path):
    wf = write(tmp_path, "real.json", empty_save(96, 64, 0x336699, prefix="cli_real"))
    r = run_cli("run", str(wf), "--out", str(tmp_path / "out"), url=gateway.url)
    assert r.returncode == 0, r.stderr
    (path,) = [Path(p) for p in r.stdout.splitlines()]
    assert path.name == "cli_real_00001_.png"
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (96, 64)
        assert img.convert("RGB").getpixel((10, 10)) == (0x33, 0x66, 0x99)
    assert "node 2 SaveImage" in r.stderr
    # The same bytes the gateway stored (its newest job is this one).
    listed = httpx.get(gateway.url + "/jobs", params={"limit": 1}).json()["jobs"][0]
    assert Path(listed["output"][0]["local_path"]).read_bytes() == path.read_bytes()
