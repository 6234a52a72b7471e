"""GET /metrics after real jobs, parsed as Prometheus parses it."""

from __future__ import annotations

import base64
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from comfy_gateway import metrics
from comfy_gateway.client import Client

from .conftest import Fake, Gateway, empty_save, png_bytes
from .test_cli import slow


def scrape(gw: Gateway, **headers: str) -> dict[tuple[str, tuple], float]:
    r = httpx.get(gw.url + "/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def failing() -> dict:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "FakeFail", "inputs": {"images": ["1", 0], "message": "boom"}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "f"}}}


@pytest.fixture
def fake(fake_factory) -> Fake:
    return fake_factory()


def test_metrics_count_outcomes_time_stages_and_show_the_present(fake: Fake, gateway_factory):
    gw = gateway_factory(fake.url, GENERATION_WORKERS="1")
    with Client(gw.url) as client:
        assert client.sync(slow(0.2, 2)).ok
        assert client.sync(failing()).status == "failed"
        fake.control(hang=True)
        held = [client.submit(empty_save(prefix=f"h{i}")) for i in range(3)]
        # Wait until the last is in the generation queue (its stream says so), then look.
        for event in client.follow(held[-1].id):
            if event.queue_position and event.queue_position.current_queue == "generation" \
                    and event.queue_position.position == 1:
                break
        m = scrape(gw)
        assert m[("comfy_gateway_queue_depth", (("stage", "generation"),))] == 2
        assert m[("comfy_gateway_queue_depth", (("stage", "preprocess"),))] == 0
        assert m[("comfy_gateway_jobs", (("status", "generating"),))] == 3
        backend = fake.url.split("://")[1]
        assert m[("comfy_gateway_backend_in_flight", (("backend", backend),))] == 1
        assert m[("comfy_gateway_stage_busy_workers", (("stage", "generation"),))] == 1
        assert m[("comfy_gateway_backend_up", (("backend", backend),))] == 1
        for job in held:
            client.cancel(job.id)
        fake.control(hang=False)

    m = scrape(gw)
    finished = {s: m[("comfy_gateway_jobs_finished_total", (("status", s),))]
                for s in ("completed", "failed", "cancelled", "timed_out")}
    assert finished == {"completed": 1, "failed": 1, "cancelled": 3, "timed_out": 0}
    assert m[("comfy_gateway_jobs_submitted_total", ())] == 5
    assert m[("comfy_gateway_job_failures_total", (("kind", "execution"),))] == 1
    assert m[("comfy_gateway_job_failures_total", (("kind", "rejected"),))] == 0
    assert m[("comfy_gateway_jobs", (("status", "completed"),))] == 1
    assert m[("comfy_gateway_jobs", (("status", "cancelled"),))] == 3
    assert m[("comfy_gateway_jobs", (("status", "generating"),))] == 0
    # Histograms: the two jobs that ran went through every stage; the slow one took >= 0.2 s.
    # None had an input to fetch: each was prepared as it arrived, no preprocess worker ran.
    assert m[("comfy_gateway_stage_duration_seconds_count", (("stage", "postprocess"),))] == 1
    assert m[("comfy_gateway_stage_duration_seconds_count", (("stage", "preprocess"),))] == 0
    assert m[("comfy_gateway_stage_duration_seconds_sum", (("stage", "generation"),))] >= 0.2
    assert m[("comfy_gateway_job_duration_seconds_count", (("status", "completed"),))] == 1
    assert m[("comfy_gateway_job_duration_seconds_bucket", (("le", "0.1"), ("status", "completed")))] == 0
    assert m[("comfy_gateway_stage_wait_seconds_count", (("stage", "preprocess"),))] == 5
    busy = m[("comfy_gateway_backend_busy_seconds_total", (("backend", fake.url.split("://")[1]),))]
    assert busy >= 0.2
    assert m[("comfy_gateway_backend_in_flight", (("backend", fake.url.split("://")[1]),))] == 0
    assert m[("comfy_gateway_webhook_failures_total", ())] == 0
    assert m[("comfy_gateway_upload_failures_total", ())] == 0
    assert m[("process_resident_memory_bytes", ())] > 0


def test_only_a_job_with_something_slow_to_prepare_takes_a_preprocess_worker(fake: Fake, gateway_factory):
    gw = gateway_factory(fake.url)
    png = base64.b64encode(png_bytes(4, 4, (1, 2, 3))).decode()
    with_input = {"1": {"class_type": "LoadImage", "inputs": {"image": f"data:image/png;base64,{png}"}},
                  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "in"}}}
    with Client(gw.url) as client:
        plain = client.sync(empty_save())
        assert plain.ok
        assert scrape(gw)[("comfy_gateway_stage_duration_seconds_count", (("stage", "preprocess"),))] == 0
        fetched = client.sync(with_input)
        assert fetched.ok
        assert scrape(gw)[("comfy_gateway_stage_duration_seconds_count", (("stage", "preprocess"),))] == 1
        # Either way the job went through the same states, with the same marks.
        for job in (plain, fetched):
            states = [e.status for e in client.follow(job.id) if e.event == "status"]
            distinct = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
            assert distinct[:3] == ["queued", "preprocessing", "generating"], states
            durations = client.result(job.id).durations
            assert durations.queue_wait is not None and durations.preprocess is not None


def test_a_lost_backend_shows_as_down(fake: Fake, gateway_factory):
    gw = gateway_factory(fake.url)
    backend = fake.url.split("://")[1]
    assert scrape(gw)[("comfy_gateway_backend_up", (("backend", backend),))] == 1
    fake.proc.stop()
    with Client(gw.url) as client:
        assert client.health().status == "unavailable"  # /health asks ComfyUI itself
    for _ in range(100):  # the websocket's reader notices the loss on its own; wait for it
        if scrape(gw)[("comfy_gateway_backend_up", (("backend", backend),))] == 0:
            break
        time.sleep(0.05)
    assert scrape(gw)[("comfy_gateway_backend_up", (("backend", backend),))] == 0


def test_metrics_need_the_key_unless_opened(fake: Fake, gateway_factory):
    locked = gateway_factory(fake.url, API_KEYS="k")
    assert httpx.get(locked.url + "/metrics").status_code == 401
    assert scrape(locked, Authorization="Bearer k")[("comfy_gateway_jobs_submitted_total", ())] == 0
    opened = gateway_factory(fake.url, API_KEYS="k", METRICS_OPEN="true")
    assert scrape(opened)[("comfy_gateway_jobs_submitted_total", ())] == 0
    assert httpx.get(opened.url + "/jobs").status_code == 401  # only /metrics is opened
    om = httpx.get(opened.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF") and "comfy_gateway_jobs_finished_total" in om.text


def test_module_functions_count_into_the_running_gateways_registry():
    m = metrics.Metrics()
    metrics.install(m)
    metrics.webhook_failed()
    metrics.webhook_failed()
    metrics.upload_failed()
    assert m.registry.get_sample_value("comfy_gateway_webhook_failures_total") == 2
    assert m.registry.get_sample_value("comfy_gateway_upload_failures_total") == 1
