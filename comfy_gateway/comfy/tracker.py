"""Follows one prompt through the websocket frames routed to it, and says when it has ended."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from ..jobs.model import Progress
from .previews import Preview, PreviewFrame
from .witness import RunWitness

ProgressCallback = Callable[[Progress], None]
PreviewCallback = Callable[[Preview], None]


class PromptTracker:
    def __init__(self, prompt_id: str, workflow: dict[str, Any], on_progress: ProgressCallback | None,
                 on_preview: PreviewCallback | None = None):
        self.prompt_id = prompt_id
        self._workflow = workflow
        self._on_progress = on_progress
        self._on_preview = on_preview
        self._done_nodes: set[str] = set()
        self._last: tuple[Any, ...] | None = None
        self._current: tuple[str, float, float] | None = None  # the node running, its step and steps
        self.posted = False  # set once ComfyUI accepted the prompt
        self.cancel_requested = False
        self.witness = RunWitness(workflow)  # the outcome as the frames tell it
        # Resolved by `executing {node: null}` (the last frame of a run, see the transcripts), or
        # by reconciliation after a websocket gap; an exception means the prompt is lost.
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def end(self, exc: BaseException | None = None) -> None:
        if not self.ended.done():
            if exc is None:
                self.ended.set_result(None)
            else:
                self.ended.set_exception(exc)

    def close(self) -> None:
        """The run is over: an end it did not await (it stopped first, e.g. cancelled while its
        POST was on its way) is marked seen, or asyncio reports it as never retrieved."""
        if self.ended.done() and not self.ended.cancelled():
            self.ended.exception()

    def on_frame(self, kind: str, data: dict[str, Any]) -> None:
        self.witness.see(kind, data)
        if kind == "executing":
            node = data.get("node")
            if node is None:
                self.end()
            else:
                self._emit(str(node), 0.0, 1.0)
        elif kind == "progress":
            self._emit(str(data.get("node")), float(data.get("value", 0)), float(data.get("max", 1) or 1))
        elif kind == "progress_state":
            running = None
            for node_id, st in (data.get("nodes") or {}).items():
                if st.get("state") == "finished":
                    self._done_nodes.add(str(node_id))
                elif st.get("state") == "running":
                    running = (str(node_id), float(st.get("value", 0)), float(st.get("max", 1) or 1))
            if running:
                self._emit(*running)
        elif kind == "execution_cached":
            # Cached nodes are done the moment ComfyUI says so; counted at once, not at the end.
            self._done_nodes.update(str(n) for n in data.get("nodes") or [])
            self._emit_current()
        elif kind == "executed":
            self._done_nodes.add(str(data.get("node")))
            self._emit_current()
        elif kind == "execution_success":
            # Nodes that finished between frames (or that no frame named) are done too.
            self._done_nodes.update(self._workflow)
            self._emit(None, 1.0, 1.0)

    def on_preview(self, frame: PreviewFrame) -> None:
        if self._on_preview is None:
            return
        node, value, max_ = self._current or (None, 0.0, 1.0)
        node = frame.node_id or node
        node_info = self._workflow.get(node) if node is not None else None
        self._on_preview(Preview(
            node=node, node_type=node_info.get("class_type") if isinstance(node_info, dict) else None,
            value=value, max=max_, mime=frame.mime, image=frame.image))

    def _emit_current(self) -> None:
        if self._current is not None:
            self._emit(*self._current)

    def _emit(self, node: str | None, value: float, max_: float) -> None:
        if node is not None:
            self._current = (node, value, max_)
        if self._on_progress is None:
            return
        key = (node, value, max_, len(self._done_nodes))
        if key == self._last:
            return
        self._last = key
        node_info = self._workflow.get(node) if node is not None else None
        self._on_progress(Progress(
            node=node, node_type=node_info.get("class_type") if isinstance(node_info, dict) else None,
            value=value, max=max_, nodes_done=len(self._done_nodes), nodes_total=len(self._workflow),
        ))
