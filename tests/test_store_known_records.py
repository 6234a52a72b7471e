"""What a Redis store process keeps of the records it read or wrote (jobs/redis_records.py
KnownRecords) never makes a change fail: a change computed from a kept record that another
process has changed since is computed again from Redis, and a read answered before this
process's own write, but handled after it, does not replace what that write left."""

from __future__ import annotations

from comfy_gateway.jobs.model import Job, JobStatus
from comfy_gateway.jobs.redis_records import KnownRecords, encode_core

from .support.stores import two_processes  # noqa: F401  (the fixture)


async def test_a_change_from_a_kept_record_another_process_moved_on_is_applied_to_the_new_one(two_processes):
    a, b = two_processes
    await a.create(Job(id="j"))
    await a.update("j", status=JobStatus.preprocessing)
    await a.update("j", status=JobStatus.generating)  # a keeps the job as "generating"
    await b.update("j", status=JobStatus.postprocessing)  # ...which b moves on
    # From a's kept record, generating -> completed is no transition at all; from Redis's it is.
    job = await a.update("j", status=JobStatus.completed, message="done")
    assert job.status is JobStatus.completed
    assert (await b.get("j")).status is JobStatus.completed


async def test_a_transition_refused_by_the_stored_record_is_still_refused(two_processes):
    from comfy_gateway.jobs.model import InvalidTransition

    a, _ = two_processes
    await a.create(Job(id="j"))
    try:
        await a.update("j", status=JobStatus.postprocessing)
    except InvalidTransition:
        pass
    else:
        raise AssertionError("queued -> postprocessing was applied")


def test_an_older_version_does_not_replace_a_newer_one():
    kept = KnownRecords()
    job = Job(id="j", status=JobStatus.generating)
    newer = Job(id="j", status=JobStatus.postprocessing)
    kept.remember(newer, "5", "born", encode_core(newer), None, None, False)
    kept.remember(job, "4", "born", encode_core(job), None, None, False)  # a read handled late
    assert kept.get("j").v == "5" and '"postprocessing"' in kept.get("j").core
    kept.remember(job, "2", "reborn", encode_core(job), None, None, False)  # the id made again
    assert kept.get("j").v == "2"
