"""Asset ids of the v2 face, with nothing to look up: an uploaded asset's id is its sha256 (the
gateway's own `asset://<sha256>` names the same bytes), and an output's id names its job and
its place in the job's outputs, so any gateway process sharing the store can serve it."""

from __future__ import annotations

import re

_SHA256 = re.compile(r"[0-9a-f]{64}")
_OUTPUT = re.compile(r"out_([0-9A-Za-z\-]{1,64})_(\d{1,6})")


def output_id(job_id: str, index: int) -> str:
    return f"out_{job_id}_{index}"


def parse_output_id(asset_id: str) -> tuple[str, int] | None:
    m = _OUTPUT.fullmatch(asset_id)
    return (m.group(1), int(m.group(2))) if m else None


def is_upload_id(asset_id: str) -> bool:
    return bool(_SHA256.fullmatch(asset_id))
