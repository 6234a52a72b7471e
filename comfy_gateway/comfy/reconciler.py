"""One per backend: ComfyUI's queue is the truth for what runs there.

Our prompts in flight on a backend are compared with its /queue and /history, and a prompt that
left the queue without a history entry (the queue was cleared, the prompt deleted, ComfyUI
restarted) is settled at once: its tracker ends with PromptLost, which frees its slot and lets
the generation stage run it once more. A prompt found in /history ends its tracker normally (its
end frames were missed); the history entry then says how it ended.

When: a `status` frame shows fewer prompts remaining than we have in flight there (a clear or
a delete sends one; no frame is sent for the prompts themselves), after a websocket gap, and on
a slow timer (RECONCILE_INTERVAL) for whatever no frame announces.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .ask import queued_ids
from .errors import BackendError, PromptLost

if TYPE_CHECKING:
    from .backend import Backend

log = logging.getLogger(__name__)

SETTLE_DELAY = 0.1  # let the frames that explain a status change arrive before asking


class Reconciler:
    def __init__(self, backend: "Backend", interval: float):
        self._backend = backend
        self._interval = interval
        self._poked = asyncio.Event()
        self._must = False
        self._task: asyncio.Task[None] | None = None
        self.runs = 0  # reconciliations done (for tests and /queue-info readers)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"reconcile:{self._backend.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def poke(self, must: bool = False) -> None:
        """Reconcile soon (several pokes in a row make one reconciliation). Without `must` (a
        status frame disagreed with our count) it is skipped if the disagreement is gone by then:
        a prompt that just ended is counted by ComfyUI before its last frame reaches us."""
        self._must = self._must or must
        self._poked.set()

    async def _loop(self) -> None:
        self._must = False
        while True:
            timer = False
            try:
                # (asyncio.timeout, not wait_for: see pipeline/sweeper.py)
                async with asyncio.timeout(self._interval):
                    await self._poked.wait()
                await asyncio.sleep(SETTLE_DELAY)
            except TimeoutError:
                timer = True
            self._poked.clear()
            must, self._must = self._must, False
            if not (timer or must or self._backend.disagrees()):
                continue
            try:
                await self.reconcile()
            except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                log.exception("backend %s: reconciliation failed", self._backend.name)

    async def reconcile(self) -> None:
        backend = self._backend
        # Only prompts whose POST had returned before the /queue snapshot can be judged by it.
        candidates = [(pid, t) for pid, t in backend.trackers() if t.posted and not t.ended.done()
                      and not t.cancel_requested]
        if not candidates:
            return
        self.runs += 1
        try:
            queued = queued_ids(await backend.http.queue())
        except BackendError as exc:
            log.warning("backend %s: reconcile skipped: %s", backend.name, exc)
            return
        for prompt_id, tracker in candidates:
            if prompt_id in queued:
                continue
            try:
                entry = await backend.http.history(prompt_id)
            except BackendError as exc:
                # The websocket's task carries no job context: name the job on the line.
                log.warning("backend %s: reconcile of %s failed: %s", backend.name, prompt_id, exc,
                            extra={"job_id": prompt_id})
                continue
            if entry:
                tracker.end()  # ended while we missed its frames: the entry says how
                continue
            log.warning("backend %s: prompt %s left ComfyUI's queue without running", backend.name,
                        prompt_id, extra={"job_id": prompt_id})
            tracker.end(PromptLost(
                f"{backend.name} no longer has prompt {prompt_id}: it left ComfyUI's queue without "
                "running (the queue was cleared, the prompt deleted, or ComfyUI restarted)"))
