"""Deleting local outputs once LOCAL_OUTPUT_TTL has passed since a job's folder last changed.

A folder is left alone while its job is still running (the store says so), whatever its age.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

from ..jobs.store import JobStore

log = logging.getLogger(__name__)


def _newest_mtime(folder: Path) -> float:
    newest = folder.stat().st_mtime
    for path in folder.rglob("*"):
        try:
            newest = max(newest, path.stat().st_mtime)
        except FileNotFoundError:
            pass
    return newest


async def expire_local_outputs(root: Path, store: JobStore, ttl: float) -> int:
    """Remove job folders under `root` untouched for `ttl` seconds; return how many."""
    if ttl <= 0 or not root.is_dir():
        return 0
    cutoff = time.time() - ttl
    removed = 0
    for folder in [p for p in root.iterdir() if p.is_dir()]:
        job = await store.get(folder.name)
        if job is not None and not job.status.terminal:
            continue
        try:
            if await asyncio.to_thread(_newest_mtime, folder) >= cutoff:
                continue
            await asyncio.to_thread(shutil.rmtree, folder)
            removed += 1
        except OSError as exc:
            log.warning("could not remove old outputs %s: %s", folder, exc)
    return removed


def remove_local(path: Path, job_root: Path) -> None:
    """Delete an uploaded file and any folders it leaves empty, up to the job's own folder."""
    path.unlink(missing_ok=True)
    parent = path.parent
    while parent != job_root.parent and parent.is_relative_to(job_root):
        try:
            parent.rmdir()
        except OSError:
            break  # not empty
        parent = parent.parent
