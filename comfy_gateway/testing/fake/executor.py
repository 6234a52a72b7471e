"""Runs queued prompts one at a time, as ComfyUI's execution.PromptExecutor does, and sends
their frames in ComfyUI's order: execution_start, execution_cached, per node progress_state +
executing ... executed, then execution_success (or _error / _interrupted); the history entry,
status and ``executing {node: null}`` follow once the prompt is done (with the history_lag
knob, the entry comes last, after every frame)."""
from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Any

from comfy_gateway.testing.fake.gpu import injected
from comfy_gateway.testing.fake.previews import preview_image, preview_jpeg, preview_with_metadata
from comfy_gateway.testing.fake.graph import ExecutionList, get_input_data, node_signatures
from comfy_gateway.testing.fake.hub import WebSocketHub
from comfy_gateway.testing.fake.knobs import Knobs
from comfy_gateway.testing.fake.nodes import (
    OOM_TIPS, Dirs, InterruptProcessingException, Node, NodeContext, OutOfMemoryError, SaveCounters,
    full_type_name,
)
from comfy_gateway.testing.fake.progress import Progress
from comfy_gateway.testing.fake.prompt_queue import PromptQueue
from comfy_gateway.testing.fake.protocol import now_ms

log = logging.getLogger(__name__)


def format_value(x: Any) -> Any:
    """execution.format_value: how an input value appears in an execution_error's current_inputs."""
    if x is None or isinstance(x, (int, float, bool, str)):
        return x
    return str(x)


class Executor:
    def __init__(self, nodes: dict[str, Node], dirs: Dirs, counters: SaveCounters, knobs: Knobs,
                 queue: PromptQueue, hub: WebSocketHub):
        self.nodes, self.dirs, self.counters, self.knobs = nodes, dirs, counters, knobs
        self.queue, self.hub = queue, hub
        self._task: asyncio.Task | None = None
        self.reset()

    def reset(self) -> None:
        self._cache: dict[str, tuple] = {}
        self.gpu_broken = False  # after a fatal CUDA error, until the process restarts
        self._interrupt = False
        self._interrupted = asyncio.Event()  # ends a node's added delay early
        self.client_id: str | None = None     # of the prompt running (or that ran last)
        self.last_node_id: str | None = None  # the node running, for a socket that reconnects meanwhile

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    def stop(self) -> list[asyncio.Task]:
        """Cancel the executor; returns its task for the caller to await."""
        tasks = [self._task] if self._task is not None else []
        for t in tasks:
            t.cancel()
        self._task = None
        return tasks

    def restart(self) -> None:
        """Abandon the running prompt (no frames, no history) and wait for new ones."""
        if self._task is not None:
            self._task.cancel()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def interrupt(self, prompt_id: str | None) -> None:
        """POST /interrupt: without a prompt_id, or with the running one's, stop at the next node boundary."""
        running = self.queue.running
        if not prompt_id or (running is not None and running[1] == prompt_id):
            self._interrupt = True
            self._interrupted.set()

    def resume_node(self, sid: str) -> str | None:
        """The node running for client ``sid``, which a socket connecting mid-prompt is told about."""
        return self.last_node_id if self.client_id == sid else None

    async def _loop(self) -> None:
        while True:
            item = await self.queue.next(lambda: self.knobs["hang"])
            try:
                await self._execute(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fake executor failed on %s", item[1])
                self.queue.running = None
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ execution
    async def _execute(self, item: list) -> None:
        _number, prompt_id, prompt, extra_data, outputs, _sensitive = item
        cid = extra_data.get("client_id")
        self.client_id, self._interrupt = cid, False
        self._interrupted.clear()
        messages: list = []
        send = self.hub.send

        def add_message(event: str, data: dict, broadcast: bool = False) -> None:
            data = {**data, "timestamp": now_ms()}
            messages.append((event, data))
            if cid is not None or broadcast:
                send(event, data, cid)

        add_message("execution_start", {"prompt_id": prompt_id})
        sigs: dict[str, str] = {}
        if self.knobs["cache"]:
            sigs = node_signatures(prompt, self.nodes)
            used = set(sigs.values())
            self._cache = {k: v for k, v in self._cache.items() if k in used}
        else:
            self._cache = {}

        def cached(nid: str):
            return self._cache.get(sigs[nid]) if sigs else None

        add_message("execution_cached", {"nodes": [n for n in prompt if cached(n) is not None],
                                         "prompt_id": prompt_id})
        progress = Progress(send, prompt_id, cid)
        ui_outputs: dict[str, dict] = {}
        results: dict[str, tuple] = {}
        executed: list[str] = []
        fail: bool | str = self.knobs["fail_next"] > 0
        if fail:
            self.knobs["fail_next"] -= 1
        for knob, kind in (("oom_next", "oom"), ("cuda_fatal_next", "fatal")):
            if not fail and self.knobs[knob] > 0:
                self.knobs[knob] -= 1
                fail = kind
        if self.gpu_broken:
            fail = "fatal"
        # A cached node that nothing uncached pulls in never enters the execution list: its
        # outputs come straight from the cache (as ComfyUI's caches.outputs.get does).
        for n in prompt:
            hit = cached(n)
            if hit is not None:
                results[n] = hit[1]
        elist = ExecutionList(prompt, self.nodes, lambda n: cached(n) is not None)
        for o in outputs:
            elist.add_node(o)
        success = True
        while not elist.empty():
            nid = elist.next_node()
            hit = cached(nid)
            if hit is not None:
                if cid is not None:
                    send("executed", {"node": nid, "display_node": nid,
                                      "output": (hit[0] or {}).get("output"), "prompt_id": prompt_id}, cid)
                    if hit[0] is not None:
                        ui_outputs[nid] = hit[0]
                progress.finish(nid)
                results[nid] = hit[1]
                elist.complete(nid)
                continue
            error, ui = await self._run_node(nid, prompt_id, prompt, extra_data, cid, progress, results, fail)
            fail = False
            if error is not None:
                success = False
                base = {"prompt_id": prompt_id, "node_id": nid, "node_type": prompt[nid]["class_type"],
                        "executed": list(executed)}
                if error == "interrupted":
                    add_message("execution_interrupted", base, broadcast=True)
                else:
                    add_message("execution_error", {**base, **error, "current_outputs": list(prompt)})
                break
            if ui:
                ui_outputs[nid] = {"meta": {"node_id": nid, "display_node": nid, "parent_node": None,
                                            "real_node_id": nid}, "output": ui}
                if cid is not None:
                    send("executed", {"node": nid, "display_node": nid, "output": ui, "prompt_id": prompt_id}, cid)
            if sigs:
                self._cache[sigs[nid]] = (ui_outputs.get(nid), results[nid])
            progress.finish(nid)
            executed.append(nid)
            elist.complete(nid)
        else:
            add_message("execution_success", {"prompt_id": prompt_id})
        self.last_node_id = None
        lag = self.knobs["history_lag"]
        if lag > 0:
            # ComfyUI sends its end frames before a client can read the history entry (the
            # transcripts: /history right after the end was {} about half the time). With the
            # knob, every end frame (status, executing None) goes out first and the entry is
            # written `lag` seconds later; until then /queue still lists the prompt as running,
            # since ComfyUI's task_done moves it from running to history in one step.
            self.queue.announce(self.queue.remaining() - 1)
            if cid is not None:
                send("executing", {"node": None, "prompt_id": prompt_id}, cid)
            await asyncio.sleep(lag)
            self.queue.task_done(item, ui_outputs, success, messages, announce=False)
            return
        # PromptQueue.task_done: history entry, then status, then executing None
        self.queue.task_done(item, ui_outputs, success, messages)
        if cid is not None:
            send("executing", {"node": None, "prompt_id": prompt_id}, cid)

    async def _run_node(self, nid, prompt_id, prompt, extra_data, cid, progress, results, fail):
        """One node as execution.execute() runs it: (None | "interrupted" | error details, ui)."""
        node = self.nodes[prompt[nid]["class_type"]]
        progress.start(nid)
        data = get_input_data(node, prompt[nid]["inputs"], results, prompt, extra_data)
        if cid is not None:
            self.last_node_id = nid
            self.hub.send("executing", {"node": nid, "display_node": nid, "prompt_id": prompt_id}, cid)

        async def on_progress(value, total):
            # Steps show in progress_state only: no recording shows ComfyUI's older `progress` frame.
            self._check_interrupt()
            progress.update(nid, value, total)
            # As ComfyUI's progress hook does (main.py, hijack_progress): no recording has a node
            # with steps, so the fake-only step nodes follow its code: the metadata preview with
            # progress_state to a client that asked for it; otherwise `progress`, then the plain one.
            with_meta = self.hub.supports(cid, "supports_preview_metadata")
            image = preview_jpeg(value, total) if self.knobs["previews"] else None
            if image is not None and with_meta:
                self.hub.send_bytes(preview_with_metadata(image, prompt_id, nid), cid)
            self.hub.send("progress", {"value": value, "max": total, "prompt_id": prompt_id, "node": nid}, cid)
            if image is not None and not with_meta:
                self.hub.send_bytes(preview_image(image), cid)

        try:
            self._check_interrupt()
            if fail in ("oom", "fatal"):
                if fail == "fatal":
                    self.gpu_broken = True
                raise injected(fail)
            if fail:
                raise RuntimeError("FakeComfyUI fail_next: injected failure")
            delay = self.knobs["node_delay"] + self.knobs["class_delay"].get(prompt[nid]["class_type"], 0.0)
            if delay > 0:
                try:  # an interrupt cuts the delay short: the fake's own time, not the node's work
                    await asyncio.wait_for(self._interrupted.wait(), delay)
                except asyncio.TimeoutError:
                    pass
            ctx = NodeContext(self.dirs, self.counters, on_progress)
            out, ui = await node.arun(ctx, **{k: v[0] for k, v in data.items()})
            # 0.3.75 (50_queue_interrupt.json): an interrupt that came while a node worked names
            # that node, not yet executed, once its work is done.
            self._check_interrupt()
        except InterruptProcessingException:
            return "interrupted", None
        except Exception as ex:
            tips = OOM_TIPS if isinstance(ex, OutOfMemoryError) else ""
            return {"exception_message": "{}\n{}".format(ex, tips), "exception_type": full_type_name(type(ex)),
                    "traceback": traceback.format_tb(ex.__traceback__),
                    "current_inputs": {k: [format_value(x) for x in v] for k, v in data.items()}}, None
        results[nid] = out
        return None, ui

    def _check_interrupt(self) -> None:
        if self._interrupt:
            self._interrupt = False
            raise InterruptProcessingException()
