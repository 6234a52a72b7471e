"""The prompt queue and history, as ComfyUI's execution.PromptQueue keeps them: pending prompts
run lowest ``number`` first, one runs at a time, and a finished one becomes a history entry.
Every change is announced with a ``status`` frame to all sockets."""
from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any, Callable

from comfy_gateway.testing.fake.knobs import Stats

MAX_HISTORY_SIZE = 10000


class PromptQueue:
    """An item is ``[number, prompt_id, prompt, extra_data, outputs, sensitive]``; /queue shows
    its first five fields."""

    def __init__(self, stats: Stats, send: Callable[[str, Any], None]):
        self._stats, self._send = stats, send
        self._wake: asyncio.Event | None = None  # set when the executor may find work
        self.reset()

    def reset(self) -> None:
        """Empty: no pending or running prompt, no history, numbering from 0 (a restarted ComfyUI)."""
        self.number = 0
        self._heap: list = []
        self._pending: dict[int, list] = {}  # seq -> item
        self._seq = itertools.count()
        self.running: list | None = None
        self.history: dict[str, dict] = {}

    def open(self) -> None:
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Make a waiting executor look again (new prompt, or the hang knob changed)."""
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------------ pending prompts
    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def remaining(self) -> int:
        return len(self._pending) + (1 if self.running is not None else 0)

    def info(self) -> dict:
        return {"exec_info": {"queue_remaining": self.remaining()}}

    def updated(self) -> None:
        self._send("status", {"status": self.info()})

    def announce(self, remaining: int) -> None:
        """A status frame saying ``remaining`` prompts are left (the state is unchanged)."""
        self._send("status", {"status": {"exec_info": {"queue_remaining": remaining}}})

    def put(self, item: list) -> None:
        seq = next(self._seq)
        self._pending[seq] = item
        heapq.heappush(self._heap, (item[0], seq))
        self._stats["max_queue_length"] = max(self._stats["max_queue_length"], len(self._pending))
        self.updated()
        self.poke()

    def sorted_pending(self) -> list[list]:
        return [self._pending[seq] for _, seq in sorted((it[0], seq) for seq, it in self._pending.items())]

    def wipe(self) -> None:
        self._pending.clear()
        self._heap = []
        self.updated()

    def delete_pending(self, prompt_id: Any) -> None:
        for seq, item in self._pending.items():
            if item[1] == prompt_id:
                if len(self._pending) == 1:
                    self.wipe()
                else:
                    del self._pending[seq]
                self.updated()
                return

    async def next(self, held: Callable[[], bool]) -> list:
        """Wait for a pending prompt (and for ``held()`` to be false), then make it the running one."""
        while True:
            while held() or not self._pending:
                self._wake.clear()
                await self._wake.wait()
            _, seq = heapq.heappop(self._heap)
            item = self._pending.pop(seq, None)
            if item is None:
                continue  # deleted while queued
            self.running = item
            self.updated()
            return item

    # ------------------------------------------------------------------ finished prompts
    def task_done(self, item: list, ui_outputs: dict[str, dict], success: bool, messages: list,
                  announce: bool = True) -> None:
        """PromptQueue.task_done: the history entry, then the status frame (unless announced already)."""
        number, prompt_id, prompt, extra_data, outputs, _sensitive = item
        self.running = None
        if len(self.history) > MAX_HISTORY_SIZE:
            self.history.pop(next(iter(self.history)))
        self.history[prompt_id] = {
            "prompt": [number, prompt_id, prompt, extra_data, outputs], "outputs": {
                n: u["output"] for n, u in ui_outputs.items()},
            "status": {"status_str": "success" if success else "error", "completed": success,
                       "messages": messages},
            "meta": {n: u["meta"] for n, u in ui_outputs.items()}}
        self._stats["prompts_executed"] += 1
        if announce:
            self.updated()
