"""The fault suite of test_faults_fake_comfyui.py again, with every gateway on the Redis store
(API_CACHE=redis): what a user sees must not depend on the store."""

from __future__ import annotations

import pytest

from .support.cluster import Cluster
from .test_faults_fake_comfyui import *  # noqa: F401,F403 - the same tests, collected here again


@pytest.fixture
def gateway_factory(tmp_path):
    """Gateways as the suite starts them, on Redis (a key prefix per test, wiped after)."""
    cluster = Cluster(tmp_path / "cluster")
    yield cluster.start
    cluster.stop()


@pytest.fixture
def gw(fake, gateway_factory):
    return gateway_factory(fake.url, SSE_PING_SECONDS="0.3")
