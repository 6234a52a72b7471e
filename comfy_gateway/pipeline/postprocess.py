"""Stage 3: stream every output from the backend's /view to disk, convert it if asked, upload it
to S3 right after (when the job has a bucket), inline it if asked, and complete the job.

When an upload fails, the remaining outputs are still fetched to disk and the job fails with
the storage error: every file stays on disk and listed in the result, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from ..comfy.history import OutputRef
from ..comfy.pool import BackendPool
from ..jobs.model import JobStatus, OutputFile
from ..jobs.sealing import SecretBox
from ..jobs.store import JobStore
from ..outputs.convert import NotConverted, convert_image, converted_name
from ..outputs.errors import StorageError
from ..outputs.inline import inline_outputs
from ..outputs.local import LocalStorage
from ..outputs.retention import remove_local
from ..outputs.s3_lazy import S3Storage
from ..outputs.s3_target import S3Target
from ..settings import Settings
from .failures import fail_job
from .output_plan import OutputPlan

if TYPE_CHECKING:
    from ..outputs.s3 import S3Bucket

CHUNK = 1 << 20
log = logging.getLogger(__name__)


class _LazyBucket:
    """Opens the job's bucket at its first upload, so that a refused endpoint still leaves
    every output fetched to disk."""

    def __init__(self, s3: S3Storage, target: S3Target | None, stack: AsyncExitStack):
        self._s3, self._target, self._stack = s3, target, stack
        self._bucket: S3Bucket | None = None
        self.error: StorageError | None = None

    async def upload(self, job_id: str, out: OutputFile, path: Path) -> None:
        if self._target is None or self.error is not None:
            return
        try:
            if self._bucket is None:
                self._bucket = await self._stack.enter_async_context(self._s3.open(self._target))
            key = self._bucket.key_for(job_id, out.filename)
            await self._bucket.upload(path, key, out.content_type)
            out.url, out.s3_key = await self._bucket.url_for(key), key
        except StorageError as exc:
            exc.details["local_path"] = str(path)
            self.error = exc


class Postprocess:
    def __init__(self, store: JobStore, pool: BackendPool, storage: LocalStorage, s3: S3Storage,
                 box: SecretBox, settings: Settings):
        self._store, self._pool, self._storage = store, pool, storage
        self._s3, self._box, self._settings = s3, box, settings

    async def __call__(self, job_id: str) -> None:
        job = await self._store.get(job_id)
        if job is None or job.status.terminal:
            return
        files: list[tuple[OutputFile, Path]] = []
        # Recorded with the stage's last change (or its failure), not as a change of its own.
        started = {"postprocess_started": time.time()}
        try:
            backend = next(b for b in self._pool.backends if b.name == job.backend)
            plan = OutputPlan.for_job(job, self._settings, self._box)
            warnings: list[str] = []
            used: set[str] = set()
            async with AsyncExitStack() as stack:
                bucket = _LazyBucket(self._s3, plan.s3, stack)
                for ref in job.comfy_outputs:
                    out, path = await self._fetch(backend, job_id, OutputRef(**ref), used)
                    if plan.convert_format:
                        path = await self._convert(out, path, plan, used, warnings)
                    files.append((out, path))
                    await bucket.upload(job_id, out, path)
            if bucket.error is not None:
                await self._store.update(job_id, output=[o for o, _ in files], marks=started)
                await fail_job(self._store, job_id, bucket.error)
                return
            if plan.inline:
                warnings += await inline_outputs(files, self._settings.inline_max_bytes)
            if plan.s3 is not None and not self._settings.keep_local_outputs:
                for out, path in files:
                    remove_local(path, self._storage.root / job_id)
                    out.local_path = None
            message = f"completed with {len(files)} output(s)"
            if warnings:
                message += f"; {len(warnings)} warning(s), see 'warnings'"
            await self._store.update(
                job_id, status=JobStatus.completed, message=message, output=[o for o, _ in files],
                warnings=warnings, marks={**started, "postprocess_finished": time.time()},
            )
        except Exception as exc:  # noqa: BLE001
            kept = {"output": [o for o, _ in files]} if files else {}
            await self._store.update(job_id, marks=started, **kept)
            await fail_job(self._store, job_id, exc)

    async def _fetch(self, backend, job_id: str, ref: OutputRef, used: set[str]) -> tuple[OutputFile, Path]:
        rel = self._storage.relative_name(job_id, ref.subfolder, ref.filename)
        if rel in used:  # two nodes wrote the same name (e.g. a preview of a saved image)
            rel = f"{ref.node_id}_{rel}"
        used.add(rel)
        async with backend.http.view(ref.filename, ref.subfolder, ref.type) as resp:
            path, size = await self._storage.write(job_id, rel, resp.content.iter_chunked(CHUNK))
            content_type = resp.headers.get("Content-Type") or ref.format
        log.info("saved %s (%d bytes) from %s", rel, size, backend.name)
        out = OutputFile(
            filename=rel, local_path=str(path), url=f"/outputs/{job_id}/{rel}", type=ref.type,
            node_id=ref.node_id, output_type=ref.output_type, content_type=content_type, size_bytes=size,
        )
        return out, path

    async def _convert(self, out: OutputFile, path: Path, plan: OutputPlan, used: set[str],
                       warnings: list[str]) -> Path:
        """Convert in place when the output is a still image; otherwise say why and keep it."""
        fmt = plan.convert_format
        assert fmt is not None
        if not (out.content_type or "").startswith("image/"):
            warnings.append(f"not converted to {fmt}: {out.filename}: {out.content_type or 'not an image'}"
                            " is left as it is")
            return path
        rel = converted_name(out.filename, fmt)
        if rel != out.filename and rel in used:
            warnings.append(f"{out.filename}: not converted: {rel} is already another output's name")
            return path
        try:
            done = await asyncio.to_thread(convert_image, path, fmt, plan.convert_quality)
        except NotConverted as exc:
            warnings.append(f"not converted to {fmt}: {exc}")
            return path
        used.discard(out.filename)
        used.add(rel)
        job_id = path.relative_to(self._storage.root).parts[0]
        out.filename, out.local_path, out.url = rel, str(done.path), f"/outputs/{job_id}/{rel}"
        out.content_type, out.size_bytes = done.content_type, done.size
        return done.path
