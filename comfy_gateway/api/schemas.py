"""The request payload and the one result object, as clients and /docs see them."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, model_validator

from ..access.keys import MAX_PRIORITY
from ..jobs.model import JobError, OutputFile, Progress, WebhookState

MAX_NODES = 5000
MAX_DEPTH = 64
INT64 = (-(2**63), 2**64 - 1)


def check_json_values(value: Any, where: str) -> None:
    """Refuse what JSON parsers accept but nothing downstream can carry: integers past 64 bits
    (orjson, ComfyUI's int inputs) and nesting deeper than MAX_DEPTH. Iterative, so a hostile
    body cannot exhaust the stack here either."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"{path}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not INT64[0] <= item <= INT64[1]:
            raise ValueError(f"{path}: integer {item} does not fit in 64 bits")
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}", depth + 1) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))


class WorkflowNode(BaseModel):
    """One node of an API-format ComfyUI workflow."""

    model_config = ConfigDict(extra="allow")
    class_type: str = Field(min_length=1, max_length=256)
    inputs: dict[str, Any] = Field(default_factory=dict)


class S3Config(BaseModel):
    """Your own bucket for this job's outputs (replaces the gateway's S3_* defaults). The keys
    are kept sealed while the job lives and appear in no result, log line or webhook."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    access_key_id: str = Field(min_length=1, max_length=256)
    secret_access_key: SecretStr = Field(min_length=1, max_length=1024)
    bucket_name: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$",
                             description="an S3 bucket name: lowercase letters, digits, dots and hyphens")
    endpoint_url: HttpUrl | None = Field(None, description="an S3-compatible endpoint; AWS S3 when absent")
    region: str | None = Field(None, max_length=64, pattern=r"^[a-z0-9\-]+$")


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl = Field(description="receives a signed POST of the final result when the job ends")
    extra_params: dict[str, Any] = Field(
        default_factory=dict, description="sent back as they are, under the body's 'extra_params' key")
    events: list[Literal["status", "progress"]] = Field(
        default_factory=list, max_length=2,
        description="Job events to deliver besides the final result, signed the same way: 'status' (each "
        "stage change), 'progress' (node and step). At most one in flight per job, in order; one that "
        "cannot go out before the next is replaced by it (never queued, never retried). Previews are "
        "never sent by webhook.")


class OutputConversion(BaseModel):
    """Re-encode image outputs (still images; video, audio and animations are left alone)."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["webp", "jpeg"]
    quality: int = Field(90, ge=1, le=100)


class GenerateInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: UUID | None = Field(
        None, description="Your own id for the job (a UUID). Re-sending the same request with the "
        "same id returns the existing job; another request under a used id is a 409. Under "
        "API_KEYS_FILE each key has ids of its own: the job id is then derived from the key's name "
        "and this id.")
    priority: int = Field(
        0, ge=0, le=MAX_PRIORITY, description="Higher is taken first in every stage's queue (first "
        "come first served within one); at most your key's max_priority (422 above it).")
    workflow_json: dict[str, WorkflowNode] | None = Field(
        None, description="An API-format ComfyUI workflow (ComfyUI's 'Export (API)').")
    modifier: str | None = Field(None, min_length=1, max_length=200,
                                 description="Name of a modifier (instead of workflow_json); GET /modifiers lists them.")
    modifications: dict[str, Any] = Field(default_factory=dict,
                                          description="Parameters for the modifier.")
    s3: S3Config | None = None
    webhook: WebhookConfig | None = None
    include_previews: bool = Field(False, description="Also fetch type=temp outputs (PreviewImage).")
    timeout: float | None = Field(
        None, gt=0, le=7 * 86400, description="Seconds the job may take in all, queue included "
        "(default JOB_TIMEOUT, at most MAX_JOB_TIMEOUT); past it the job is stopped in ComfyUI "
        "and ends `timed_out`.")
    convert_output: OutputConversion | None = Field(
        None, description="Convert image outputs to webp or jpeg at the given quality.")
    base64_outputs: bool = Field(
        False, description="Also return each output's bytes as base64 in the result (up to INLINE_MAX_BYTES per job).")
    previews: bool = Field(
        False, description="Send `preview` events (node, step, and the step's preview image as base64) on the "
        "job's stream while it runs. Only the latest preview is kept; a slow reader skips stale ones.")
    cancel_on_disconnect: bool = Field(
        False, description="For /generate/sync and /generate/stream: cancel the job when the caller disconnects "
        "before it ends (by default it keeps running and its result stays available).")

    def job_payload(self) -> dict[str, Any]:
        """The request as the runtime takes it: JSON types, the S3 secret revealed (the runtime
        seals it before storing anything)."""
        payload = self.model_dump(mode="json", exclude_none=True)
        if self.request_id is not None:
            payload["request_id"] = str(self.request_id)
        if self.s3 is not None:
            payload["s3"]["secret_access_key"] = self.s3.secret_access_key.get_secret_value()
        return payload

    @model_validator(mode="after")
    def _one_source(self) -> "GenerateInput":
        if (self.workflow_json is None) == (self.modifier is None):
            raise ValueError("give exactly one of 'workflow_json' or 'modifier'")
        if self.modifications and self.modifier is None:
            raise ValueError("'modifications' are for a modifier: name one in 'modifier', or set the values "
                             "in 'workflow_json' yourself")
        if self.workflow_json is not None:
            if not self.workflow_json:
                raise ValueError("'workflow_json' has no nodes")
            if len(self.workflow_json) > MAX_NODES:
                raise ValueError(f"'workflow_json' has more than {MAX_NODES} nodes")
            for node_id, node in self.workflow_json.items():
                check_json_values(node.model_dump(), f"workflow_json.{node_id}")
        check_json_values(self.modifications, "modifications")
        if self.webhook is not None:
            check_json_values(self.webhook.extra_params, "webhook.extra_params")
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
    request_id: str | None = Field(None, description="your request_id, as sent")
    key: str | None = Field(None, description="the name of the API key that submitted the job")
    priority: int = 0
    status: Literal["queued", "preprocessing", "generating", "postprocessing", "completed", "failed",
                    "cancelled", "timed_out"]
    message: str
    output: list[OutputFile]
    error: JobError | None
    progress: Progress | None
    backend: str | None
    webhook: WebhookState | None = None
    warnings: list[str] = []
    created_at: str
    updated_at: str
    finished_at: str | None
    durations: Durations


class JobList(BaseModel):
    jobs: list[JobResult] = Field(description="newest first, outputs without inline base64")
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null at the end")


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
URL_INPUT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "https://example.com/photo.png"}},
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
    "s3_webhook_webp": {
        "summary": "Outputs to your own bucket as WebP, and a signed webhook when the job ends",
        "value": {"input": {
            "workflow_json": EMPTY_SAVE,
            "s3": {"access_key_id": "AKIA...", "secret_access_key": "...", "bucket_name": "my-bucket",
                   "region": "eu-west-1"},
            "webhook": {"url": "https://example.com/hooks/comfy", "extra_params": {"order": 42}},
            "convert_output": {"format": "webp", "quality": 85},
        }},
    },
    "base64": {
        "summary": "The outputs' bytes in the result itself (one round trip)",
        "value": {"input": {"workflow_json": EMPTY_SAVE, "base64_outputs": True}},
    },
    "url_input": {
        "summary": "An image URL as input: fetched, checked, uploaded to ComfyUI (also data: URIs, asset://)",
        "value": {"input": {"workflow_json": URL_INPUT}},
    },
    "load_invert": {
        "summary": "LoadImage -> ImageInvert -> SaveImage (example.png uploaded to ComfyUI)",
        "value": {"input": {"workflow_json": INVERT}},
    },
}
