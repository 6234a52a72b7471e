"""Stage 3: stream every output from the backend's /view to storage and complete the job."""

from __future__ import annotations

import logging
import time

from ..comfy.history import OutputRef
from ..comfy.pool import BackendPool
from ..jobs.model import JobStatus, OutputFile
from ..jobs.store import JobStore
from ..outputs.local import LocalStorage
from .failures import fail_job

CHUNK = 1 << 20
log = logging.getLogger(__name__)


class Postprocess:
    def __init__(self, store: JobStore, pool: BackendPool, storage: LocalStorage):
        self._store, self._pool, self._storage = store, pool, storage

    async def __call__(self, job_id: str) -> None:
        job = await self._store.get(job_id)
        if job is None or job.status.terminal:
            return
        try:
            await self._store.update(job_id, marks={"postprocess_started": time.time()})
            backend = next(b for b in self._pool.backends if b.name == job.backend)
            files: list[OutputFile] = []
            used: set[str] = set()
            for ref in job.comfy_outputs:
                files.append(await self._fetch(backend, job_id, OutputRef(**ref), used))
            await self._store.update(
                job_id, status=JobStatus.completed,
                message=f"completed with {len(files)} output(s)", output=files,
                marks={"postprocess_finished": time.time()},
            )
        except Exception as exc:  # noqa: BLE001
            await fail_job(self._store, job_id, exc)

    async def _fetch(self, backend, job_id: str, ref: OutputRef, used: set[str]) -> OutputFile:
        rel = self._storage.relative_name(job_id, ref.subfolder, ref.filename)
        if rel in used:  # two nodes wrote the same name (e.g. a preview of a saved image)
            rel = f"{ref.node_id}_{rel}"
        used.add(rel)
        async with backend.http.view(ref.filename, ref.subfolder, ref.type) as resp:
            path, size = await self._storage.write(job_id, rel, resp.content.iter_chunked(CHUNK))
            content_type = resp.headers.get("Content-Type") or ref.format
        log.info("saved %s (%d bytes) from %s", rel, size, backend.name)
        return OutputFile(
            filename=rel, local_path=str(path), url=f"/outputs/{job_id}/{rel}", type=ref.type,
            node_id=ref.node_id, output_type=ref.output_type, content_type=content_type, size_bytes=size,
        )
