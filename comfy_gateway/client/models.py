"""Typed mirrors of what the gateway sends: the result object, stream events, queue and health.

Standalone on purpose (pydantic only, nothing of the server), so a program that only calls a
gateway imports no FastAPI. Unknown fields are kept, not refused: a newer gateway that adds a
field must not break an older client.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

JobStatus = Literal["queued", "preprocessing", "generating", "postprocessing", "completed", "failed",
                    "cancelled", "timed_out"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled", "timed_out"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class OutputFile(_Model):
    filename: str
    url: str | None = None
    local_path: str | None = None
    type: str = "output"
    node_id: str | None = None
    output_type: str | None = None
    content_type: str | None = None
    size_bytes: int | None = None


class JobError(_Model):
    kind: str = "internal"
    type: str = ""
    message: str = ""
    node_errors: dict[str, Any] | None = None
    details: dict[str, Any] | None = None


class Progress(_Model):
    node: str | None = None
    node_type: str | None = None
    value: float = 0
    max: float = 1
    nodes_done: int = 0
    nodes_total: int = 0


class Durations(_Model):
    queue_wait: float | None = None
    preprocess: float | None = None
    generation_wait: float | None = None
    generation: float | None = None
    postprocess_wait: float | None = None
    postprocess: float | None = None
    total: float | None = None


class JobResult(_Model):
    """The one result object every endpoint answers with."""

    id: str
    status: JobStatus
    message: str = ""
    output: list[OutputFile] = []
    error: JobError | None = None
    progress: Progress | None = None
    backend: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    durations: Durations = Durations()

    @property
    def done(self) -> bool:
        """The job has ended (completed, failed, cancelled or timed out)."""
        return self.status in TERMINAL

    @property
    def ok(self) -> bool:
        return self.status == "completed"


class QueuePosition(_Model):
    current_queue: str | None = None
    position: int | None = None  # jobs before this one in its stage queue; None: not waiting
    queue_size: int = 0
    estimated_wait_time: float | None = None


class StreamEvent(_Model):
    """One server-sent event of /generate/stream or /result/{id}/stream. `event` is the SSE
    event name (status, queue, progress, preview, final_result); `id` is what Last-Event-ID
    takes (a preview has none). A preview also has node, node_type, step, steps and image
    ({content_type, base64})."""

    event: str
    id: str | None = None
    request_id: str
    status: str
    message: str = ""
    elapsed_time: float | None = None
    queue_position: QueuePosition | None = None
    queue_info: dict[str, int] | None = None
    progress: Progress | None = None
    result: JobResult | None = None  # only on final_result


class StageInfo(_Model):
    waiting: int
    workers: int
    busy: int
    mean_duration: float | None = None
    measured_jobs: int = 0


class BackendState(_Model):
    name: str
    connected: bool
    in_flight: int


class QueueInfo(_Model):
    queues: dict[str, StageInfo]
    waiting: int
    max_queue_size: int
    estimated_wait_time: float | None = None
    backends: list[BackendState] = []


class BackendHealth(_Model):
    name: str  # the backend's label (configured name or backend-<index>), never its address
    url: str | None = None  # only from gateways older than the labels
    state: str | None = None  # ready, down, warming, cooling_down, probing, failed_until_restart
    reachable: bool
    websocket_connected: bool = False
    in_flight: int = 0
    comfyui_version: str | None = None
    queue_running: int | None = None
    queue_pending: int | None = None
    error: str | None = None


class Health(_Model):
    status: Literal["ok", "degraded", "unavailable"]
    version: str | None = None
    uptime: float | None = None
    backends: list[BackendHealth] = []
    queues: dict[str, int] = {}


class Readiness(_Model):
    """GET /ready: whether a load balancer should send this gateway work now, and why not."""

    ready: bool
    reasons: list[str] = []
    backends_in_rotation: list[str] = []
    waiting: int = 0
