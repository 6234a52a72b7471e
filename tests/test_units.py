"""Small pure pieces: workflow preparation, history parsing, output paths, wait estimates."""

from __future__ import annotations

from dataclasses import fields

import pytest

from comfy_gateway.comfy.errors import ExecutionFailed, ExecutionInterrupted
from comfy_gateway.comfy.history import output_refs, raise_for_status
from comfy_gateway.jobs.usage import UsageRecord
from comfy_gateway.outputs.local import LocalStorage, UnsafePath
from comfy_gateway.pipeline.estimates import StageStats, estimate_wait
from comfy_gateway.workflows.prepare import prepare_workflow

from .support.transcripts import transcript


def test_prepare_prefixes_every_filename_prefix_with_the_job_id():
    wf = {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "a/b"}},
          "2": {"class_type": "VHS", "inputs": {"filename_prefix": ""}},
          "3": {"class_type": "EmptyImage", "inputs": {"width": 1}}}
    out = prepare_workflow(wf, "J")
    assert out["1"]["inputs"]["filename_prefix"] == "J/a/b"
    assert out["2"]["inputs"]["filename_prefix"] == "J/ComfyUI"
    assert out["3"] == wf["3"]
    assert wf["1"]["inputs"]["filename_prefix"] == "a/b"  # the client's copy is untouched


def test_output_refs_from_recorded_history():
    entry = transcript("20_upload_pipeline.json")["history"]["251d622a-ec19-4a0b-b269-0c546b76e809"]
    refs = sorted(output_refs(entry), key=lambda r: r.node_id)
    assert [(r.node_id, r.output_type, r.type, r.subfolder, r.filename) for r in refs] == [
        ("7", "images", "output", "probeB", "inv_00001_.png"),
        ("8", "images", "temp", "", "ComfyUI_temp_optep_00001_.png"),
    ]
    raise_for_status(entry)


def test_output_refs_any_kind_of_output():
    entry = {"outputs": {"9": {"gifs": [{"filename": "a.mp4", "subfolder": "J", "type": "output",
                                         "format": "video/h264-mp4"}],
                               "audio": [{"filename": "a.flac", "subfolder": "", "type": "output"}],
                               "animated": [True], "text": ["hello"]}}}
    refs = list(output_refs(entry))
    assert [(r.output_type, r.filename, r.format) for r in refs] == [
        ("gifs", "a.mp4", "video/h264-mp4"), ("audio", "a.flac", None)]


def test_raise_for_status_from_recorded_errors():
    entry = transcript("40_runtime_errors.json")["corrupt_image"]["history"]
    with pytest.raises(ExecutionFailed) as exc:
        raise_for_status(next(iter(entry.values())))
    assert exc.value.data["exception_type"] == "PIL.UnidentifiedImageError"
    hist = transcript("50_queue_interrupt.json")["history"]["ae573ff2-5424-443c-b71c-2480d85d1a81"]
    with pytest.raises(ExecutionInterrupted):
        raise_for_status(next(iter(hist.values())))


def test_local_paths_stay_inside_the_job_folder(tmp_path):
    s = LocalStorage(tmp_path)
    assert s.relative_name("J", "J", "a.png") == "a.png"
    assert s.relative_name("J", "J/sub", "a.png") == "sub/a.png"
    assert s.relative_name("J", "", "t.png") == "t.png"
    for sub, name in (("../x", "a.png"), ("J", "../a.png"), ("J", ""), ("/etc", "passwd/x")):
        with pytest.raises(UnsafePath):
            s.relative_name("J", sub, name)
    with pytest.raises(UnsafePath):
        s.path_for("J", "../../etc/passwd")


def test_wait_estimates_come_from_measurements():
    stats = StageStats()
    sizes = {"preprocess": 0, "generation": 4, "postprocess": 0}
    workers = {"preprocess": 1, "generation": 2, "postprocess": 1}
    assert estimate_wait("generation", 3, sizes, workers, stats) is None  # nothing measured yet
    for stage, secs in (("preprocess", 0.01), ("generation", 2.0), ("postprocess", 0.1)):
        stats.record(stage, secs)
    # 3 jobs ahead on 2 workers: one round of 2 s before its own 2 s, then postprocess.
    assert estimate_wait("generation", 3, sizes, workers, stats) == pytest.approx(2.0 + 2.0 + 0.1)
    # From the preprocess queue the whole generation backlog (4 on 2 workers) is ahead.
    assert estimate_wait("preprocess", 0, sizes, workers, stats) == pytest.approx(0.01 + 4.0 + 2.0 + 0.1)
    stats.record("generation", 4.0)
    assert stats.mean("generation") == pytest.approx(2.4)


def test_api_cache_and_workers_settings(capsys):
    from pydantic import ValidationError

    from comfy_gateway.cli import serve
    from comfy_gateway.settings import Settings

    with pytest.raises(ValidationError, match="API_CACHE is 'memory' or 'redis'"):
        Settings(api_cache="memcached")
    # Several processes with a store each would each keep their own jobs: refused.
    assert serve(Settings(api_workers=2, api_cache="memory")) == 2
    assert "API_CACHE=redis" in capsys.readouterr().err
    s = Settings(api_cache="Redis", redis_host="db", redis_port=6380, redis_db=2, redis_password="pw")
    assert s.api_cache == "redis"
    assert s.redis_location == "redis://db:6380/2"  # the password travels apart, never in a URL
    assert Settings(redis_url="redis://other:1/0").redis_location == "redis://other:1/0"


def test_a_usage_record_round_trips_through_its_json_with_every_field():
    record = UsageRecord(key="k", job_id="j", status="completed", finished_at=1.5, queue_seconds=0.25,
                         gpu_seconds=2.0, output_bytes=7)
    assert set(record.to_json()) == {f.name for f in fields(UsageRecord)}
    assert UsageRecord.from_json(record.to_json()) == record
