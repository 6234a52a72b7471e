"""API_KEYS_FILE parsing and the key ring (issue 15): every mistake named with its place and
never echoing a key; a reload that fails keeps the keys in force."""

from __future__ import annotations

import hashlib
import logging

import pytest

from comfy_gateway.access.keys import KeyRing, KeysFileError, parse_keys_file
from comfy_gateway.pipeline.idempotency import job_id_for

SECRET = "a-secret-key-that-must-not-show"


@pytest.mark.parametrize("body, says", [
    ("[keys.a\n", "not valid TOML"),
    ("x = 1\n", "no [keys.<name>] table"),
    (f'[keys."bad name"]\nkey = "{SECRET}"\n', "a name is 1-64"),
    ("[keys.a]\nmax_queued = 1\n", "exactly one of key_sha256 or key"),
    (f'[keys.a]\nkey = "{SECRET}"\nkey_sha256 = "{"0" * 64}"\n', "exactly one of key_sha256 or key"),
    ('[keys.a]\nkey = "short"\n', "at least 16 characters"),
    ('[keys.a]\nkey_sha256 = "ABC"\n', "64 lowercase hex digits"),
    (f'[keys.a]\nkey = "{SECRET}"\nmax_queued = 0\n', "max_queued must be an integer of at least 1"),
    (f'[keys.a]\nkey = "{SECRET}"\nmax_priority = 1001\n', "max_priority must be an integer from 0 to 1000"),
    (f'[keys.a]\nkey = "{SECRET}"\nadmin = "yes"\n', "admin must be true or false"),
    (f'[keys.a]\nkey = "{SECRET}"\nmax_qeued = 3\n', "unknown field(s) max_qeued"),
    (f'[keys.a]\nkey = "{SECRET}"\n[keys.b]\nkey = "{SECRET}"\n', "[keys.b]: the same key as another entry"),
])
def test_a_bad_keys_file_is_refused_with_its_place_and_never_the_key(tmp_path, body, says):
    path = tmp_path / "keys.toml"
    path.write_text(body)
    with pytest.raises(KeysFileError) as refused:
        parse_keys_file(path)
    assert says in str(refused.value) and SECRET not in str(refused.value)


def test_defaults_hash_and_plain_keys_match(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(f'[keys.a]\nkey_sha256 = "{hashlib.sha256(SECRET.encode()).hexdigest()}"\n'
                    '[keys.b]\nkey = "another-key-of-16-chars"\nadmin = true\nmax_queued = 3\nmax_priority = 7\n')
    ring = KeyRing(path, [])
    a, b = ring.match(SECRET), ring.match("another-key-of-16-chars")
    assert (a.name, a.admin, a.max_queued, a.max_priority, a.sees_all()) == ("a", False, None, 0, False)
    assert (b.name, b.admin, b.max_queued, b.max_priority, b.sees_all()) == ("b", True, 3, 7, True)
    assert ring.match(SECRET[:-1]) is None and ring.match("") is None


def test_a_reload_that_fails_keeps_the_keys_and_a_good_one_drops_removed_keys(tmp_path, caplog):
    path = tmp_path / "keys.toml"
    path.write_text(f'[keys.a]\nkey = "{SECRET}"\n')
    ring = KeyRing(path, [])
    path.write_text("[keys.a\n")
    with caplog.at_level(logging.INFO):
        assert ring.reload() is False
    assert ring.match(SECRET).name == "a" and "not reloaded" in caplog.text
    path.write_text('[keys.b]\nkey = "another-key-of-16-chars"\n')
    with caplog.at_level(logging.INFO):
        assert ring.reload() is True
    assert ring.match(SECRET) is None and ring.match("another-key-of-16-chars").name == "b"
    assert "removed a" in caplog.text and SECRET not in caplog.text


def test_api_keys_are_unscoped_admins_and_request_ids_are_job_ids_there():
    ring = KeyRing(None, [b"k1-0123456789abcdef", b"k2-0123456789abcdef"])
    assert [ring.match("k1-0123456789abcdef").name, ring.match("k2-0123456789abcdef").name] == ["api_keys[0]",
                                                                                                 "api_keys[1]"]
    assert ring.match("k2-0123456789abcdef").sees_all() and not ring.scoped
    assert job_id_for("r", None) == "r" and job_id_for(None, "alice") is None
    assert job_id_for("r", "alice") == job_id_for("r", "alice") != job_id_for("r", "bob")


async def test_wait_estimates_count_only_jobs_of_its_priority_or_higher_in_later_stages(tmp_path):
    from comfy_gateway.jobs.memory import MemoryJobStore
    from comfy_gateway.jobs.model import Job, JobStatus
    from comfy_gateway.pipeline.runtime import Runtime
    from comfy_gateway.settings import Settings

    store = MemoryJobStore()
    runtime = Runtime(Settings(output_dir=tmp_path, postprocess_workers=1), store=store)
    for stage in ("preprocess", "generation", "postprocess"):
        runtime.stats.record(stage, 1.0)
    for i in range(4):  # a backlog of ordinary jobs waiting for postprocessing
        await store.create(Job(id=f"low{i}", status=JobStatus.queued))
        await store.dequeue("preprocess")
        await store.advance(f"low{i}", "postprocess", status=JobStatus.preprocessing)
    for job_id, priority in (("urgent", 5), ("plain", 0)):
        await store.create(Job(id=job_id, priority=priority))
        await store.dequeue("preprocess")
        await store.advance(job_id, "generation", status=JobStatus.preprocessing)
        await store.update(job_id, status=JobStatus.generating)
    urgent, _ = await runtime.queue_position(await store.get("urgent"))
    plain, _ = await runtime.queue_position(await store.get("plain"))
    assert (urgent["current_queue"], urgent["position"], plain["position"]) == ("generation", 0, 1)
    # Its own turn (1 s) and its own postprocess (1 s): the four waiting there will go after it.
    assert urgent["estimated_wait_time"] == 2.0
    assert plain["estimated_wait_time"] == 1.0 + 4 * 1.0 + 1.0
