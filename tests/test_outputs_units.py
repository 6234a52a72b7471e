"""Small pure pieces of the output side: sealing, signing, retry rules, conversion, retention,
the store's terminal listener, and the settings that guard secrets."""

from __future__ import annotations

import base64
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError
from standardwebhooks import Webhook

from comfy_gateway.jobs.memory import MemoryJobStore
from comfy_gateway.jobs.model import Job, JobStatus, OutputFile, WebhookState
from comfy_gateway.jobs.sealing import SealError, SecretBox
from comfy_gateway.outputs.convert import NotConverted, convert_image, converted_name
from comfy_gateway.outputs.errors import redact
from comfy_gateway.outputs.inline import inline_outputs
from comfy_gateway.outputs.retention import expire_local_outputs, remove_local
from comfy_gateway.outputs.webhooks import backoff, should_retry
from comfy_gateway.pipeline.output_plan import OutputPlan, seal_request
from comfy_gateway.settings import Settings, webhook_key

from .conftest import WEBHOOK_SECRET
from .support.webhook_receiver import verify_signature


def test_sealed_credentials_open_only_for_their_job():
    box = SecretBox()
    token = box.seal("s3cr3t-value", "job-1")
    assert "s3cr3t" not in token and SecretBox.is_sealed(token)
    assert box.open(token, "job-1") == "s3cr3t-value"
    with pytest.raises(SealError):
        box.open(token, "job-2")  # copied into another job: refused
    with pytest.raises(SealError):
        SecretBox().open(token, "job-1")  # another key (SECRETS_KEY changed)
    with pytest.raises(SealError):
        box.open(token[:-4] + "AAAA", "job-1")


def test_stored_request_keeps_no_credential_in_clear():
    box = SecretBox()
    payload = {"workflow_json": {}, "s3": {"access_key_id": "AKIAXYZ", "secret_access_key": "very-secret",
                                           "bucket_name": "b", "endpoint_url": "http://s3.example.com"}}
    stored = seal_request(payload, "J", box)
    assert "very-secret" not in str(stored) and "AKIAXYZ" not in str(stored)
    assert payload["s3"]["secret_access_key"] == "very-secret"  # the caller's copy is untouched
    plan = OutputPlan.for_job(Job(id="J", request=stored), Settings(), box)
    assert plan.s3 is not None and plan.s3.client_named
    assert (plan.s3.access_key_id, plan.s3.secret_access_key) == ("AKIAXYZ", "very-secret")
    assert "very-secret" not in repr(plan.s3)


def test_signature_verifies_with_the_standard_library_and_the_reference_package():
    key = webhook_key(WEBHOOK_SECRET)
    body = '{"id":"j","status":"completed"}'
    now = datetime.now(timezone.utc)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(key).sign("msg_1", now, body)}
    assert headers["webhook-signature"].startswith("v1,")
    assert verify_signature(WEBHOOK_SECRET, headers, body.encode())
    assert Webhook(WEBHOOK_SECRET).verify(body, headers) == {"id": "j", "status": "completed"}
    assert not verify_signature(WEBHOOK_SECRET, headers, body.encode() + b" ")
    # The secret may be given without its whsec_ prefix: the same key.
    assert webhook_key(WEBHOOK_SECRET.removeprefix("whsec_")) == key


@pytest.mark.parametrize("status, retry", [(500, True), (502, True), (503, True), (408, True), (429, True),
                                           (400, False), (401, False), (404, False), (410, False), (301, False)])
def test_what_is_retried(status, retry):
    assert should_retry(status) is retry


def test_backoff_grows_with_jitter_and_honours_retry_after():
    for attempt in range(1, 8):
        delays = {backoff(attempt, 1.0) for _ in range(50)}
        full = min(300.0, 2 ** (attempt - 1))
        assert all(full / 2 <= d <= full for d in delays) and len(delays) > 1
    assert backoff(1, 1.0, "30") >= 30
    assert backoff(1, 1.0, "99999") <= 300


def test_settings_refuse_bad_secrets_without_echoing_them():
    with pytest.raises(ValidationError) as exc:
        Settings(webhook_secret="whsec_c2hvcnQ=")
    assert "c2hvcnQ" not in str(exc.value) and "at least 24" in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        Settings(webhook_secret="not base64 at all!")
    assert "not base64 at all" not in str(exc.value)
    with pytest.raises(ValidationError, match="WEBHOOK_URL needs WEBHOOK_SECRET"):
        Settings(webhook_url="https://example.com/hook")
    with pytest.raises(ValidationError) as exc:
        Settings(s3_access_key_id="AKIA", s3_secret_access_key="")
    assert "S3_SECRET_ACCESS_KEY" in str(exc.value)
    with pytest.raises(ValidationError, match="SECRETS_KEY"):
        Settings(secrets_key="dG9vIHNob3J0")
    assert Settings(secrets_key=base64.b64encode(os.urandom(32)).decode()).secrets_key


def test_redact_replaces_every_secret():
    assert redact("key AKIA123 and s3cret, s3cret", ["s3cret", "AKIA123", None, ""]) == \
        "key [redacted] and [redacted], [redacted]"


def _png(path: Path, mode: str = "RGB", size=(30, 20)) -> Path:
    Image.new(mode, size, (10, 200, 30, 128)[: len(mode)] if mode != "L" else 77).save(path, format="PNG")
    return path


@pytest.mark.parametrize("fmt, pil, mode", [("webp", "WEBP", "RGB"), ("webp", "WEBP", "RGBA"),
                                            ("jpeg", "JPEG", "RGBA"), ("jpeg", "JPEG", "L")])
def test_convert_still_images(tmp_path, fmt, pil, mode):
    src = _png(tmp_path / "a.png", mode)
    done = convert_image(src, fmt, 80)
    assert not src.exists() and done.path.name == converted_name("a.png", fmt)
    with Image.open(done.path) as img:
        assert img.format == pil and img.size == (30, 20)
        if fmt == "webp" and mode == "RGBA":
            assert img.mode == "RGBA"  # alpha kept where the format has it
    assert done.size == done.path.stat().st_size


def test_convert_leaves_animations_and_non_images_alone(tmp_path):
    gif = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    with pytest.raises(NotConverted, match="animated"):
        convert_image(gif, "webp", 80)
    assert gif.exists()
    text = tmp_path / "notes.png"
    text.write_bytes(b"not an image")
    with pytest.raises(NotConverted, match="not a still image"):
        convert_image(text, "jpeg", 80)
    assert text.exists()
    assert converted_name("sub/dir.x/a.png", "jpeg") == "sub/dir.x/a.jpg"


async def test_inline_stops_at_the_cap(tmp_path):
    files = []
    for i, size in enumerate((100, 300, 50)):
        p = tmp_path / f"f{i}"
        p.write_bytes(bytes([i]) * size)
        files.append((OutputFile(filename=p.name, type="output", node_id="1", output_type="images", size_bytes=size), p))
    warnings = await inline_outputs(files, cap=200)
    assert [o.base64 is not None for o, _ in files] == [True, False, True]
    assert base64.b64decode(files[2][0].base64) == bytes([2]) * 50
    assert len(warnings) == 1 and "f1" in warnings[0] and "INLINE_MAX_BYTES" in warnings[0]


async def test_retention_removes_only_old_folders_of_ended_jobs(tmp_path):
    store = MemoryJobStore()
    old = time.time() - 1000
    for name in ("gone", "running", "fresh"):
        (tmp_path / name / "sub").mkdir(parents=True)
        (tmp_path / name / "sub" / "x.png").write_bytes(b"x")
    for name in ("gone", "running"):
        for p in (tmp_path / name, tmp_path / name / "sub", tmp_path / name / "sub" / "x.png"):
            os.utime(p, (old, old))
    await store.create(Job(id="running"))
    assert await expire_local_outputs(tmp_path, store, ttl=100) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "running"]
    assert await expire_local_outputs(tmp_path, store, ttl=0) == 0  # 0 keeps forever


def test_remove_local_cleans_empty_folders_up_to_the_job(tmp_path):
    job = tmp_path / "J"
    (job / "a" / "b").mkdir(parents=True)
    f = job / "a" / "b" / "x.png"
    f.write_bytes(b"x")
    (job / "keep.png").write_bytes(b"y")
    remove_local(f, job)
    assert sorted(p.name for p in job.iterdir()) == ["keep.png"]
    remove_local(job / "keep.png", job)
    assert not job.exists() and tmp_path.exists()


@pytest.mark.parametrize("end", [JobStatus.completed, JobStatus.failed, JobStatus.cancelled, JobStatus.timed_out])
async def test_terminal_listener_sees_every_ending_once(end):
    store = MemoryJobStore()
    seen: list[tuple[str, str]] = []
    store.add_listener(lambda job, previous: seen.append((job.id, job.status.value)) if job.status.terminal else None)
    await store.create(Job(id="j"))
    path = {JobStatus.completed: [JobStatus.preprocessing, JobStatus.generating, JobStatus.postprocessing]}.get(end, [])
    for status in path:
        await store.update("j", status=status)
    assert seen == []
    await store.update("j", status=end, message="the end")
    await store.update("j", status=JobStatus.failed, message="too late")  # dropped: already ended
    assert seen == [("j", end.value)]
    # Webhook attempts are recorded on the ended job, without a new event.
    events = len(await store.events_after("j", 0))
    await store.set_webhook("j", WebhookState(state="delivered", attempts=1, last_status=200))
    job = await store.get("j")
    assert job.webhook.state == "delivered" and job.status is end
    assert len(await store.events_after("j", 0)) == events


async def test_a_broken_listener_does_not_undo_the_transition():
    store = MemoryJobStore()
    store.add_listener(lambda job, previous: 1 / 0)
    await store.create(Job(id="j"))
    job = await store.update("j", status=JobStatus.cancelled, message="cancelled")
    assert job.status is JobStatus.cancelled
