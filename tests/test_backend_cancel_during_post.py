"""A prompt cancelled while its POST is on its way: the run ends with PromptCancelled, the prompt
is interrupted in ComfyUI, and nothing is left for asyncio to complain about later (an exception set on
a future nobody awaits is printed as "Future exception was never retrieved" when it is freed)."""
from __future__ import annotations

import asyncio
import gc
import uuid

import aiohttp
import pytest

from comfy_gateway.comfy.backend import Backend
from comfy_gateway.comfy.errors import PromptCancelled

from .support.fake_client import chain, fake, get  # noqa: F401  (fixture)
from .support.settling import eventually


async def test_cancel_during_the_post_leaves_no_unretrieved_exception(fake):
    loop = asyncio.get_running_loop()
    complaints: list[dict] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: complaints.append(context))
    # Queued at once and answered half a second later; its nodes run for a second each, so the
    # prompt has not ended by itself when the cancel comes.
    fake.set(prompt_reply_delay=0.5, node_delay=1)
    try:
        async with aiohttp.ClientSession() as session:
            backend = Backend(fake.url, session, timeout=10, lost_after=10)
            await backend.start()
            try:
                await asyncio.wait_for(backend.connected.wait(), 10)
                prompt_id = uuid.uuid4().hex
                run = asyncio.create_task(backend.run(prompt_id, chain()))
                await asyncio.sleep(0.2)  # the POST is on its way
                await backend.cancel(prompt_id)
                with pytest.raises(PromptCancelled):
                    await run
                del run

                async def withdrawn():
                    _, history = await get(session, fake.url + f"/history/{prompt_id}")
                    messages = history.get(prompt_id, {}).get("status", {}).get("messages", [])
                    return [kind for kind, _ in messages]

                kinds = await eventually(withdrawn, 10, "the prompt ended in ComfyUI's history")
                assert "execution_interrupted" in kinds and "execution_success" not in kinds
            finally:
                await backend.stop()
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
        fake.set(prompt_reply_delay=0, node_delay=0)
    assert [c.get("message") for c in complaints] == []
