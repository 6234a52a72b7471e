"""What `comfy-gateway run` and `result --wait` show while a job goes: status lines, the queue
position while it waits, a progress bar per node while it generates (rich); and failures in
ComfyUI's own words."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from ..client.models import JobResult, QueuePosition, StreamEvent


def _num(x: float) -> str:
    return f"{x:g}"


class _BarsOnly(ProgressColumn):
    """A column shown for node bars only: the queue line is text alone."""

    def __init__(self, inner: ProgressColumn):
        super().__init__()
        self.inner = inner

    def render(self, task: Task):  # type: ignore[override]
        return Text("") if task.fields.get("queue") else self.inner.render(task)


class JobDisplay:
    """Feed it the stream's events. On a terminal the queue position is one line updated in
    place; in a log (not a terminal) each change is a line of its own."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            *(_BarsOnly(c) for c in (BarColumn(bar_width=30), MofNCompleteColumn(), TimeElapsedColumn())),
            console=console, transient=False,
        )
        self._nodes: dict[str, TaskID] = {}
        self._current: str | None = None
        self._overall: TaskID | None = None
        self._queue_task: TaskID | None = None
        self._last_status: tuple[str, str] | None = None
        self._last_queue: tuple[Any, ...] | None = None

    def __enter__(self) -> "JobDisplay":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def event(self, ev: StreamEvent) -> None:
        if ev.event == "final_result":
            self._end(ev.result)
            return
        if (ev.status, ev.message) != self._last_status:
            self._last_status = (ev.status, ev.message)
            said = f": {escape(ev.message)}" if ev.message and ev.message != ev.status else ""
            self.console.print(f"[dim]{ev.elapsed_time or 0:6.2f}s[/] [bold]{ev.status}[/]{said}")
        self._queue(ev.queue_position)
        if ev.progress is not None and ev.progress.node is not None:
            self._overall_to(ev.progress.nodes_done, ev.progress.nodes_total)  # first: the top bar
            self._node(ev.progress.node, ev.progress.node_type, ev.progress.value, ev.progress.max)

    def _queue(self, qp: QueuePosition | None) -> None:
        waiting = qp is not None and qp.position is not None
        if not waiting:
            if self._queue_task is not None:
                self.progress.remove_task(self._queue_task)
                self._queue_task = None
            return
        assert qp is not None and qp.position is not None
        key = (qp.current_queue, qp.position, qp.queue_size)
        if key == self._last_queue:
            return
        self._last_queue = key
        ahead = "next in line" if qp.position == 0 else f"{qp.position} ahead"
        eta = f", about {qp.estimated_wait_time:.1f} s" if qp.estimated_wait_time is not None else ""
        text = f"waiting in the {qp.current_queue} queue: position {qp.position + 1} of {qp.queue_size} ({ahead}{eta})"
        if not self.console.is_terminal:
            self.console.print(f"        {text}")
        elif self._queue_task is None:
            self._queue_task = self.progress.add_task(text, total=None, queue=True)
        else:
            self.progress.update(self._queue_task, description=text)

    def _node(self, node: str, node_type: str | None, value: float, max_: float) -> None:
        if self._current is not None and self._current != node:
            self._finish(self._current)  # ComfyUI runs one node at a time: the last one is done
        self._current = node
        task = self._nodes.get(node)
        if task is None:
            task = self.progress.add_task(f"node {node} {escape(node_type or '?')}", total=max_ or 1)
            self._nodes[node] = task
        self.progress.update(task, completed=value, total=max_ or 1)

    def _overall_to(self, done: int, total: int) -> None:
        if self._overall is None:
            self._overall = self.progress.add_task("[bold]all nodes[/]", total=max(total, 1))
        self.progress.update(self._overall, completed=done, total=max(total, 1))

    def _finish(self, node: str) -> None:
        task = self._nodes[node]
        total = self.progress.tasks[self._index(task)].total or 1
        self.progress.update(task, completed=total)

    def _index(self, task: TaskID) -> int:
        return next(i for i, t in enumerate(self.progress.tasks) if t.id == task)

    def _end(self, result: JobResult | None) -> None:
        self._queue(None)
        if result is None or result.status != "completed":
            return
        for node in self._nodes:
            self._finish(node)
        if self._overall is not None:
            total = self.progress.tasks[self._index(self._overall)].total or 1
            self.progress.update(self._overall, completed=total)


def describe_failure(result: JobResult) -> list[str]:
    """A failed, cancelled or timed-out job as lines a person reads: ComfyUI's message, each
    node's errors (and the input they are about), an exception raised while running."""
    lines = [f"job {result.id} {result.status.replace('_', ' ')}: {result.message}"]
    err = result.error
    if err is None:
        return lines
    if err.message and err.message != result.message:
        lines.append(f"  {err.message}")
    for node_id, info in (err.node_errors or {}).items():
        info = info if isinstance(info, dict) else {}
        lines.append(f"  node {node_id} ({info.get('class_type') or '?'}):")
        for e in info.get("errors") or []:
            text = e.get("message") or e.get("type") or "error"
            if e.get("details"):
                text += f": {e['details']}"
            name = (e.get("extra_info") or {}).get("input_name")
            if name:
                text += f" [input '{name}']"
            lines.append(f"    - {text}")
    d = err.details or {}
    if d.get("exception_type") or d.get("exception_message"):
        lines.append(f"  node {d.get('node_id', '?')} ({d.get('node_type') or '?'}) raised "
                     f"{d.get('exception_type') or 'an exception'}: {str(d.get('exception_message', '')).strip()}")
    return lines
