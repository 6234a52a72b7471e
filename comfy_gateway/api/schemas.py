"""The request payload and the one result object, as clients and /docs see them."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, model_validator

from ..jobs.model import JobError, OutputFile, Progress

MAX_NODES = 5000


class WorkflowNode(BaseModel):
    """One node of an API-format ComfyUI workflow."""

    model_config = ConfigDict(extra="allow")
    class_type: str = Field(min_length=1, max_length=256)
    inputs: dict[str, Any] = Field(default_factory=dict)


class S3Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    access_key_id: str = Field(min_length=1, max_length=256)
    secret_access_key: SecretStr = Field(min_length=1, max_length=1024)
    bucket_name: str = Field(min_length=3, max_length=63)
    endpoint_url: HttpUrl | None = None
    region: str | None = Field(None, max_length=64)


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl
    extra_params: dict[str, Any] = Field(default_factory=dict)


class GenerateInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: UUID | None = Field(
        None, description="Your own id for the job (a UUID). Re-sending the same request with the "
        "same id returns the existing job; another request under a used id is a 409.")
    workflow_json: dict[str, WorkflowNode] | None = Field(
        None, description="An API-format ComfyUI workflow (ComfyUI's 'Export (API)').")
    modifier: str | None = Field(None, min_length=1, max_length=200,
                                 description="Name of a modifier class (instead of workflow_json).")
    modifications: dict[str, Any] = Field(default_factory=dict,
                                          description="Parameters for the modifier.")
    s3: S3Config | None = None
    webhook: WebhookConfig | None = None
    include_previews: bool = Field(False, description="Also fetch type=temp outputs (PreviewImage).")
    timeout: float | None = Field(
        None, gt=0, le=7 * 86400, description="Seconds the job may take in all, queue included "
        "(default JOB_TIMEOUT, at most MAX_JOB_TIMEOUT); past it the job is stopped in ComfyUI "
        "and ends `timed_out`.")

    @model_validator(mode="after")
    def _one_source(self) -> "GenerateInput":
        if (self.workflow_json is None) == (self.modifier is None):
            raise ValueError("give exactly one of 'workflow_json' or 'modifier'")
        if self.workflow_json is not None:
            if not self.workflow_json:
                raise ValueError("'workflow_json' has no nodes")
            if len(self.workflow_json) > MAX_NODES:
                raise ValueError(f"'workflow_json' has more than {MAX_NODES} nodes")
        return self


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: GenerateInput


class Durations(BaseModel):
    queue_wait: float | None = None
    preprocess: float | None = None
    generation_wait: float | None = None
    generation: float | None = None
    postprocess_wait: float | None = None
    postprocess: float | None = None
    total: float | None = None


class JobResult(BaseModel):
    """The one result object: returned by every endpoint and carried by the last stream event."""

    id: str
    status: Literal["queued", "preprocessing", "generating", "postprocessing", "completed", "failed",
                    "cancelled", "timed_out"]
    message: str
    output: list[OutputFile]
    error: JobError | None
    progress: Progress | None
    backend: str | None
    created_at: str
    updated_at: str
    finished_at: str | None
    durations: Durations


class JobList(BaseModel):
    jobs: list[JobResult] = Field(description="newest first")


class ErrorBody(BaseModel):
    detail: str
    errors: list[dict[str, Any]] | None = None


EMPTY_SAVE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 1122867}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "hello"}},
}
INVERT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inverted"}},
}
REQUEST_EXAMPLES = {
    "empty_image": {
        "summary": "EmptyImage -> SaveImage (runs on a CPU ComfyUI without weights)",
        "value": {"input": {"workflow_json": EMPTY_SAVE}},
    },
    "own_id": {
        "summary": "Your own request_id, previews included",
        "value": {"input": {"request_id": "0b6cfa52-0a39-4d4e-9a55-0b1c3f1c2a10",
                            "workflow_json": EMPTY_SAVE, "include_previews": True}},
    },
    "load_invert": {
        "summary": "LoadImage -> ImageInvert -> SaveImage (example.png uploaded to ComfyUI)",
        "value": {"input": {"workflow_json": INVERT}},
    },
}
