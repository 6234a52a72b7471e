"""The event loop's lag in /metrics: exposed by a running gateway, and a loop held by a
blocking call shows up as a lag as long as the stall."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from comfy_gateway.client import Client
from comfy_gateway.loop_lag import LoopLagSampler

from .conftest import empty_save
from .test_metrics import scrape

LAG = "comfy_gateway_event_loop_lag_seconds"


def test_a_running_gateway_samples_its_event_loop_lag(fake_factory, gateway_factory):
    gw = gateway_factory(fake_factory().url, LOOP_LAG_INTERVAL="0.005")
    with Client(gw.url) as client:
        assert client.sync(empty_save()).ok
    first = scrape(gw)
    assert first[(f"{LAG}_bucket", (("le", "+Inf"),))] == first[(f"{LAG}_count", ())]
    deadline = time.monotonic() + 30
    while (second := scrape(gw))[(f"{LAG}_count", ())] <= first[(f"{LAG}_count", ())]:
        assert time.monotonic() < deadline, "the lag histogram never moved"
        time.sleep(0.05)
    assert second[(f"{LAG}_sum", ())] >= first[(f"{LAG}_sum", ())]


async def test_a_blocked_loop_is_recorded_as_a_lag_as_long_as_the_stall():
    registry = CollectorRegistry()
    sampler = LoopLagSampler(registry, interval=0.005)
    sampler.start()
    try:
        await asyncio.sleep(0.05)  # a few samples of a loop that is free
        time.sleep(0.2)  # holds the loop, as a synchronous encode or hash of megabytes would
        await asyncio.sleep(0.05)
    finally:
        await sampler.stop()
    count = registry.get_sample_value(f"{LAG}_count")
    under_100ms = registry.get_sample_value(f"{LAG}_bucket", {"le": "0.1"})
    assert count and count >= 3
    # The stall was 200 ms; a sample due during it woke at least 195 ms late.
    assert count - under_100ms >= 1
    assert registry.get_sample_value(f"{LAG}_sum") >= 0.15


async def test_an_interval_of_zero_turns_the_sampler_off():
    registry = CollectorRegistry()
    sampler = LoopLagSampler(registry, interval=0)
    sampler.start()
    await asyncio.sleep(0.05)
    await sampler.stop()
    assert registry.get_sample_value(f"{LAG}_count") == 0
