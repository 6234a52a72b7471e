"""The faults of test_faults_fake_comfyui.py whose outcome goes through the job store, again
with every gateway on the Redis store (API_CACHE=redis): a full queue, queue positions, retries
after a ComfyUI restart, a job outliving a sync call, a cancel while no backend answers, many
clients at once. What a user sees must not depend on the store."""

from __future__ import annotations

import pytest

from .support.cluster import Cluster
from .test_faults_fake_comfyui import (  # noqa: F401 - fixtures and the store-dependent tests
    fake,
    gw,
    shared_fake,
    test_health_is_503_when_no_backend_answers,
    test_many_concurrent_clients_all_served,
    test_queue_full_is_429_and_queued_jobs_survive,
    test_restarted_comfyui_job_is_retried_once,
    test_restarted_twice_job_fails_clearly,
    test_stream_shows_queue_positions_descending,
    test_sync_timeout_answers_202_and_the_job_goes_on,
)


@pytest.fixture
def gateway_factory(tmp_path):
    """Gateways as the suite starts them, on Redis (a key prefix per test, wiped after)."""
    cluster = Cluster(tmp_path / "cluster")
    yield cluster.start
    cluster.stop()


@pytest.fixture(scope="module")
def shared_gw(shared_fake, tmp_path_factory):
    """The module's gateway, on Redis."""
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    yield cluster.start(shared_fake.url, SSE_PING_SECONDS="0.3")
    cluster.stop()
