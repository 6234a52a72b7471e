"""Logging for the service: text or JSON lines (LOG_FORMAT), with the job id on every line
about a job.

The job id travels in a context variable: the worker pools set it around each job, so every
line logged inside a stage (and in tasks the stage starts, which copy the context) carries
`job_id` without any call passing it. uvicorn's own loggers (startup, access log) go through the
same handler, so the whole output is one format.
"""

from __future__ import annotations

import logging
import re
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Iterator

import orjson

current_job_id: ContextVar[str | None] = ContextVar("job_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(job_prefix)s%(message)s"
_JOB_PATH = re.compile(r"^/(?:result|outputs)/([^/?#]+)")
_MARK = "_comfy_gateway_handler"  # tags our handler so a second setup replaces, not duplicates


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Every line logged inside the block (and in tasks started there) carries this job id."""
    token = current_job_id.set(job_id)
    try:
        yield
    finally:
        current_job_id.reset(token)


def _access_fields(record: logging.LogRecord) -> dict[str, object] | None:
    # uvicorn.access logs '%s - "%s %s HTTP/%s" %d' with (client, method, path, version, status).
    if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
        client, method, path, version, status = record.args
        return {"client": client, "method": method, "path": path, "http_version": version, "status": status}
    return None


class JobIdFilter(logging.Filter):
    """Sets record.job_id: an explicit `extra={"job_id": ...}` wins, then the context variable,
    then (access log lines) the id in a /result/<id> or /outputs/<id> path."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            job_id = current_job_id.get()
            if job_id is None and (access := _access_fields(record)) is not None:
                m = _JOB_PATH.match(str(access["path"]))
                job_id = m.group(1) if m else None
            record.job_id = job_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job_id when about a job, the
    request's fields on access lines, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            out["job_id"] = job_id
        access = _access_fields(record)
        if access:
            out.update(access)
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        job_id = getattr(record, "job_id", None)
        # A message that already names the job does not get it twice.
        record.job_prefix = f"[job {job_id}] " if job_id and job_id not in record.getMessage() else ""
        return super().format(record)


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    """Route every logger (ours, uvicorn's, libraries') to one stderr handler in `fmt`."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _MARK, True)
    handler.addFilter(JobIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's default config gives its loggers handlers of their own; send them to ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
