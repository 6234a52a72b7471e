"""The Job record and its state machine. Terminal states are final."""

from __future__ import annotations

import time
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field


class JobStatus(str, Enum):
    queued = "queued"
    preprocessing = "preprocessing"
    generating = "generating"
    postprocessing = "postprocessing"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    timed_out = "timed_out"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.completed, JobStatus.failed, JobStatus.cancelled, JobStatus.timed_out})

# Forward only: a job moves through the stages in order and may end from any of them.
_ENDINGS = {JobStatus.failed, JobStatus.cancelled, JobStatus.timed_out}
ALLOWED: dict[JobStatus, set[JobStatus]] = {
    JobStatus.queued: {JobStatus.preprocessing} | _ENDINGS,
    JobStatus.preprocessing: {JobStatus.generating} | _ENDINGS,
    JobStatus.generating: {JobStatus.postprocessing} | _ENDINGS,
    JobStatus.postprocessing: {JobStatus.completed} | _ENDINGS,
}


class InvalidTransition(Exception):
    def __init__(self, job_id: str, old: JobStatus, new: JobStatus):
        super().__init__(f"job {job_id}: {old.value} -> {new.value} is not allowed")
        self.old, self.new = old, new


class OutputFile(BaseModel):
    filename: str
    local_path: str | None = None
    url: str | None = None
    type: str = Field(description="ComfyUI's folder type: 'output', or 'temp' for previews")
    node_id: str
    output_type: str = Field(description="the key of the node's output: images, gifs, video, audio...")
    content_type: str | None = None
    size_bytes: int | None = None
    s3_key: str | None = Field(None, description="the object's key when the output went to S3")
    base64: str | None = Field(None, description="the file itself, when the request asked for base64 outputs")


class WebhookState(BaseModel):
    """How the delivery of the job's webhook went, updated after every attempt."""

    state: str = Field("pending", description="pending | retrying | delivered | failed")
    attempts: int = 0
    last_status: int | None = Field(None, description="HTTP status of the last answer")
    last_error: str | None = None


class JobError(BaseModel):
    kind: str = Field("internal", description="rejected | execution | interrupted | backend | storage | internal "
                                              "| modifier | input")
    type: str
    message: str
    node_errors: dict[str, Any] | None = None
    details: dict[str, Any] | None = None


class Progress(BaseModel):
    node: str | None = None
    node_type: str | None = None
    value: float = 0
    max: float = 1
    nodes_done: int = 0
    nodes_total: int = 0


class Job(BaseModel):
    """One request's whole life. `request` holds the client's input; `workflow` the prompt
    that goes to ComfyUI once preprocessing built it."""

    id: str
    status: JobStatus = JobStatus.queued
    message: str = "queued"
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    request: dict[str, Any] = Field(default_factory=dict)
    workflow: dict[str, Any] | None = None
    backend: str | None = None
    output: list[OutputFile] = Field(default_factory=list)
    error: JobError | None = None
    progress: Progress | None = None
    # Set when a webhook will be sent at the end; it records every delivery attempt.
    webhook: WebhookState | None = None
    # Things the client asked for that could not be done, without failing the job.
    warnings: list[str] = Field(default_factory=list)
    # What ComfyUI's /history listed, kept between generation and postprocess (not shown).
    comfy_outputs: list[dict[str, Any]] = Field(default_factory=list)
    # The input files the workflow names, checked at preprocess, that generation uploads to
    # the backend it runs on: {path, source, sha256, filename, mime} each (not shown).
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    request_hash: str | None = None
    # The name of the API key that submitted the job (never the key itself); with
    # API_KEYS_FILE only that key (or an admin) sees the job.
    owner: str | None = None
    # The client's own request_id, as sent (the job id is derived from it per key, see runtime).
    request_id: str | None = None
    # Higher is taken first from every stage's queue; first come first served within one.
    priority: int = 0
    deadline: float | None = None  # epoch seconds; past it the job is stopped and ends timed_out
    attempts: int = 0  # generation attempts (a prompt lost by a restarted ComfyUI is retried once)
    # When each step began and ended (epoch seconds), e.g. preprocess_started.
    marks: dict[str, float] = Field(default_factory=dict)

    def transition(self, new: JobStatus) -> None:
        if new not in ALLOWED.get(self.status, set()):
            raise InvalidTransition(self.id, self.status, new)
        self.status = new
        now = time.time()
        self.updated_at = now
        if new.terminal:
            self.finished_at = now

    def snapshot(self) -> "Job":
        """The job as it stands, for the event and listeners of a state it passes through: a
        shallow copy whose marks a later apply_change (which updates them in place) leaves alone."""
        return self.model_copy(update={"marks": dict(self.marks)})

    def apply_change(self, *, status: JobStatus | None, message: str | None,
                     marks: dict[str, float] | None, fields: dict[str, Any]) -> str | None:
        """Apply one store update in place (the state machine guards the status) and return
        the event it records: 'status', 'final_result', or None when only fields changed.
        Both stores call this, so a change means the same thing in memory and in Redis."""
        if status is not None and status != self.status:
            self.transition(status)
        if message is not None:
            self.message = message
        if marks:
            self.marks.update(marks)
        for key, value in fields.items():
            setattr(self, key, value)
        self.updated_at = time.time()
        if status is None and message is None:
            return None
        return "final_result" if self.status.terminal else "status"

    def durations(self) -> dict[str, float | None]:
        """Per-stage seconds derived from the marks, so nothing is stored twice."""
        m = self.marks

        def span(a: str, b: str) -> float | None:
            return round(m[b] - m[a], 6) if a in m and b in m else None

        end = self.finished_at
        return {
            "queue_wait": span("created", "preprocess_started"),
            "preprocess": span("preprocess_started", "preprocess_finished"),
            "generation_wait": span("preprocess_finished", "generation_started"),
            "generation": span("generation_started", "generation_finished"),
            "postprocess_wait": span("generation_finished", "postprocess_started"),
            "postprocess": span("postprocess_started", "postprocess_finished"),
            "total": round(end - self.created_at, 6) if end else None,
        }
