"""What a job asked to be done with its outputs: where they go, how they are converted, whether
they come back inline. Read from the stored request (credentials sealed) and the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..jobs.model import Job
from ..jobs.sealing import SecretBox
from ..outputs.s3_target import S3Target
from ..settings import Settings


@dataclass(frozen=True)
class OutputPlan:
    s3: S3Target | None
    convert_format: str | None
    convert_quality: int
    inline: bool

    @classmethod
    def for_job(cls, job: Job, settings: Settings, box: SecretBox) -> "OutputPlan":
        req = job.request
        s3_cfg = req.get("s3")
        target = (S3Target.from_request(s3_cfg, lambda sealed: box.open(sealed, job.id)) if s3_cfg
                  else S3Target.from_settings(settings))
        conv: dict[str, Any] = req.get("convert_output") or {}
        return cls(s3=target, convert_format=conv.get("format"), convert_quality=int(conv.get("quality") or 90),
                   inline=bool(req.get("base64_outputs")))


def seal_request(payload: dict[str, Any], job_id: str, box: SecretBox) -> dict[str, Any]:
    """The request as it may be stored: a copy whose S3 credentials are sealed for this job."""
    s3 = payload.get("s3")
    if not s3:
        return payload
    sealed = dict(s3)
    for name in ("access_key_id", "secret_access_key"):
        sealed[name] = box.seal(str(s3[name]), job_id)
    return {**payload, "s3": sealed}
