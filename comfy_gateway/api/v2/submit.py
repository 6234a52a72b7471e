"""POST /api/v2/jobs turned into a gateway job: the checks the v2 contract makes at submission
(UI-format export, core/ASSET references, ComfyUI's own validation, the Idempotency-Key),
then the same runtime.submit the gateway's own API uses."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...access.keys import ApiKey
from ...comfy.errors import PromptRejected
from ...inputs.assets import asset_ref
from ...jobs.model import Job
from ...pipeline.idempotency import DuplicateRequest
from ...pipeline.runtime import Runtime
from ..generate import check_destinations
from ..ownership import may_see
from ..schemas import MAX_NODES, GenerateInput, GenerateRequest, check_json_values
from .asset_index import AssetIndex
from .errors import V2Error
from .ids import is_upload_id, parse_output_id

# A v2 job's id is derived from its Idempotency-Key, so the store itself (memory or Redis, one
# process or many) refuses a second job under the same key: no separate table of keys to race on.
_KEY_NAMESPACE = uuid.UUID("6c7d8e9f-0a1b-4c2d-8e3f-4a5b6c7d8e9f")
MAX_KEY_LENGTH = 255
MAX_LABELS = 16
GATEWAY_OPTIONS = {"timeout", "webhook", "s3", "include_previews", "previews", "convert_output", "base64_outputs"}


class JobRequest(BaseModel):
    """The v2 submission. `gateway` carries options of the gateway's own API that the v2
    contract has no words for (see the README); the official SDK never sends it."""

    model_config = ConfigDict(extra="ignore")
    workflow: dict[str, Any] = Field(description="An API-format ComfyUI workflow")
    extra_data: dict[str, Any] | None = None
    metadata: dict[str, str] | str | None = Field(None, description="string labels kept on the job")
    priority: int | None = Field(None, description="accepted and ignored (advisory in the contract)")
    gateway: dict[str, Any] | None = Field(
        None, description="gateway options: timeout, webhook, s3, include_previews, convert_output, base64_outputs")


def job_id_for(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise V2Error(400, "invalid_request", f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters")
    return str(uuid.uuid5(_KEY_NAMESPACE, key))


def _labels(raw: dict[str, str] | str | None) -> dict[str, str] | None:
    if raw is None or isinstance(raw, str):
        return None  # the self-hosted proxy's opaque string label: kept nowhere, like there
    if len(raw) > MAX_LABELS or any(len(k) > 64 or len(v) > 256 for k, v in raw.items()):
        raise V2Error(422, "metadata_invalid", f"metadata: at most {MAX_LABELS} labels, keys up to 64 and "
                                               "values up to 256 characters")
    return dict(raw)


def _is_ui_format(workflow: dict[str, Any]) -> bool:
    return isinstance(workflow.get("nodes"), list) and "links" in workflow


async def _resolve_assets(value: Any, runtime: Runtime, missing: list[str], caller: ApiKey) -> Any:
    """core/ASSET references -> the gateway's own input references (asset://<sha256>), which
    preprocessing fetches and uploads to the backend like any other input."""
    if isinstance(value, dict) and value.get("__type") == "core/ASSET":
        info = value.get("info")
        ref = await _asset_source(info, runtime, caller) if isinstance(info, dict) else None
        if ref is None:
            missing.append(str(info.get("id")) if isinstance(info, dict) else "<core/ASSET without info>")
            return value
        return ref
    if isinstance(value, dict):
        return {k: await _resolve_assets(v, runtime, missing, caller) for k, v in value.items()}
    if isinstance(value, list):
        return [await _resolve_assets(v, runtime, missing, caller) for v in value]
    return value


async def _asset_source(info: dict[str, Any], runtime: Runtime, caller: ApiKey) -> str | None:
    index = AssetIndex(runtime.settings.assets_dir, runtime.settings.asset_ttl)
    asset_id, hashed = info.get("id"), info.get("hash")
    if isinstance(asset_id, str) and is_upload_id(asset_id) and index.get(asset_id):
        return asset_ref(asset_id)
    if isinstance(asset_id, str) and (parsed := parse_output_id(asset_id)):
        # An output of an earlier job as an input: its file becomes an asset like an upload.
        job = await runtime.store.get(parsed[0])
        if (job is not None and may_see(caller, job) and parsed[1] < len(job.output)
                and job.output[parsed[1]].local_path):
            try:
                with open(job.output[parsed[1]].local_path, "rb") as fh:
                    data = fh.read(runtime.settings.max_input_bytes + 1)
                blob, _ = await runtime.inputs.store_asset(data, job.output[parsed[1]].content_type)
            except Exception:  # noqa: BLE001 - gone or too large: it is missing for this job
                return None
            return asset_ref(blob.sha256)
    if isinstance(hashed, str) and (meta := index.find(hashed)):
        return asset_ref(meta.sha256)
    return None


async def submit_v2(runtime: Runtime, body: JobRequest, key: str | None, caller: ApiKey) -> Job:
    """Create the job for `caller`, or raise V2Error with the code the SDK maps to its
    exception. `key` is the Idempotency-Key; with API_KEYS_FILE it is scoped to the caller."""
    if runtime.draining:
        raise V2Error(503, "unavailable", "the gateway is shutting down and takes no new jobs", headers={"Retry-After": "5"})
    job_id = job_id_for(key)
    if body.extra_data:
        raise V2Error(422, "invalid_request", "extra_data (a partner-node API key) is not supported by this gateway")
    if len(body.workflow) > MAX_NODES:
        raise V2Error(422, "invalid_workflow", f"the workflow has more than {MAX_NODES} nodes")
    try:  # before anything walks it: no nesting deeper than MAX_DEPTH, no integer past 64 bits
        check_json_values(body.workflow, "workflow")
    except ValueError as exc:
        raise V2Error(422, "invalid_workflow", str(exc)) from None
    if _is_ui_format(body.workflow):
        raise V2Error(422, "workflow_format_ui", "this is a UI-export graph; export the workflow in API format")
    for node_id, node in body.workflow.items():
        if not isinstance(node, dict):
            raise V2Error(422, "invalid_workflow", f"node {node_id}: expected an object with class_type and inputs")
    missing: list[str] = []
    workflow = await _resolve_assets(body.workflow, runtime, missing, caller)
    if missing:
        raise V2Error(422, "missing_asset", f"unknown or expired core/ASSET reference(s): {', '.join(missing)}",
                      {"missing_ids": missing})
    try:
        await runtime.checker.check(workflow, placeholders=True)
    except PromptRejected as exc:
        raise V2Error(422, "invalid_workflow", exc.error.get("message") or "the workflow is invalid",
                      {"node_errors": exc.node_errors, "error": exc.error}) from None
    options = dict(body.gateway or {})
    unknown = set(options) - GATEWAY_OPTIONS
    if unknown:
        raise V2Error(422, "invalid_request", f"gateway: unknown option(s) {sorted(unknown)}; "
                                              f"known: {sorted(GATEWAY_OPTIONS)}")
    try:
        inp = GenerateInput.model_validate({**options, "workflow_json": workflow})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        code = "invalid_workflow" if where.startswith("workflow_json") or not where else "invalid_request"
        raise V2Error(422, code, f"{where.replace('workflow_json', 'workflow') or 'workflow'}: {first.get('msg')}") from None
    limit = runtime.settings.max_job_timeout
    if inp.timeout is not None and inp.timeout > limit:
        raise V2Error(422, "invalid_request", f"gateway.timeout: at most {limit:g} seconds (MAX_JOB_TIMEOUT)")
    check_destinations(GenerateRequest(input=inp), runtime)
    payload = inp.job_payload()
    labels = _labels(body.metadata)
    payload["v2"] = {"metadata": labels} if labels else {}
    if job_id is not None:
        payload["request_id"] = job_id
    try:
        job, created = await runtime.submit(payload, caller)
    except DuplicateRequest:  # the same key with another body
        created, job = False, None
    if not created:
        raise V2Error(422, "idempotency_key_reuse", "this Idempotency-Key was already used; keys are single-use: "
                                                    "get or list your jobs instead of resubmitting with it",
                      {"job_id": job_id})
    return job
