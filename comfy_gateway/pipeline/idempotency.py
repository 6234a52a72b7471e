"""Which job a request stands for: a request_id names one job (per key under API_KEYS_FILE),
and the same request_id with another payload is refused rather than silently answered with a
job that does something else."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import orjson


class DuplicateRequest(Exception):
    def __init__(self, job_id: str):
        super().__init__(f"request_id {job_id} is already used by a different request")
        self.job_id = job_id


def request_hash(payload: dict[str, Any]) -> str:
    body = {k: v for k, v in payload.items() if k != "request_id"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


# Job ids derived from a key's request_id: uuid5 under this namespace of (key name, request_id).
REQUEST_ID_NAMESPACE = uuid.UUID("5b0d7a34-2f7e-4c4b-9a57-6f1b1c0e9d15")


def job_id_for(request_id: str | None, key_name: str | None) -> str | None:
    """The id of the job a request_id stands for: the request_id itself when jobs are not
    owned by keys (API_KEYS or none), else a UUID derived from the key's name and the
    request_id, so that two keys using one request_id get two jobs, each id still unique and
    the same in every process."""
    if not request_id or key_name is None:
        return request_id
    return str(uuid.uuid5(REQUEST_ID_NAMESPACE, f"{key_name}\n{request_id}"))
