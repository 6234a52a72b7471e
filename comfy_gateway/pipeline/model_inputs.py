"""Models named by URL in a workflow, from preprocessing to the backend: found by the loader
table, downloaded into the model cache (progress in the job's events), then placed on the
backend that runs the job (comfy/model_delivery.py) under the name its loaders list."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..comfy.backend import Backend
from ..comfy.model_delivery import ModelDelivery
from ..inputs.describe import describe
from ..inputs.errors import InputError, InputUnavailable
from ..inputs.fetch import FetchLimits, input_session
from ..inputs.find import InputRef
from ..inputs.model_cache import CachedModel, ModelCache
from ..inputs.models import LoaderTable, ModelRef, split_model_refs
from ..jobs.store import JobStore
from ..net.guard import NetworkPolicy
from ..settings import Settings

PROGRESS_EVERY = 1.0  # seconds between download progress messages of one job
# The job's mark once every input has been checked (models: their address, declared size and
# first bytes) while model downloads go on: POST /generate answers then, not at their end.
INPUTS_CHECKED = "inputs_checked"


class ModelInputs:
    def __init__(self, settings: Settings, backends: list[Backend]):
        self.table = LoaderTable.load(settings.model_loaders_file)
        policy = NetworkPolicy.parse(settings.asset_allowed_networks)
        self.cache = ModelCache(
            settings.model_cache_dir, settings.model_cache_bytes, policy,
            FetchLimits(max_bytes=settings.max_model_bytes, connect_timeout=settings.input_connect_timeout,
                        total_timeout=settings.model_timeout, max_redirects=settings.input_max_redirects,
                        size_setting="MAX_MODEL_BYTES", timeout_setting="MODEL_TIMEOUT"),
            settings.assets_dir)
        self.delivery = ModelDelivery(backends, settings.shared_models_dir, settings.backend_timeout)
        self._policy = policy
        self._session = None
        self._pending: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._session = input_session(self._policy)
        self.cache.start(self._session)
        await self.delivery.start()

    async def stop(self) -> None:
        await self.delivery.stop()
        if self._session is not None:
            await self._session.close()

    def split(self, workflow: dict[str, Any], refs: list[InputRef]) -> tuple[list[ModelRef], list[InputRef]]:
        return split_model_refs(workflow, refs, self.table)

    # -- preprocess ---------------------------------------------------------------------------
    async def resolve(self, store: JobStore, job_id: str, refs: list[ModelRef],
                      names: dict[str, str]) -> list[dict[str, Any]]:
        """Download every model the refs name (each URL once); the job's input entries."""
        first = refs[0]
        try:
            await self.delivery.check_a_way()
        except InputError as exc:
            raise exc.at(first.ref.where, describe(first.ref.source)) from None
        distinct = {m.ref.source: m for m in refs}
        heads = {source: asyncio.Event() for source in distinct}

        async def download_all() -> list[CachedModel]:
            return await asyncio.gather(*(self._one(store, job_id, m, names, heads[m.ref.source])
                                          for m in distinct.values()))

        async def all_checked() -> None:
            for head in heads.values():
                await head.wait()

        # Tasks, not bare gathers: cancelled at the end, they leave no unretrieved error behind.
        downloads = asyncio.create_task(download_all())
        checked = asyncio.create_task(all_checked())
        try:
            await asyncio.wait({downloads, checked}, return_when=asyncio.FIRST_COMPLETED)
            if not downloads.done():
                await store.update(job_id, marks={INPUTS_CHECKED: time.time()},
                                   message=f"inputs checked; downloading {len(distinct)} model(s)")
            got = dict(zip(distinct, await downloads))
        finally:
            checked.cancel()
            downloads.cancel()
        return [{"path": list(m.ref.path), "source": m.ref.source, "sha256": got[m.ref.source].sha256,
                 "filename": got[m.ref.source].filename, "mime": f"model/{got[m.ref.source].format}",
                 "model_folder": m.folder} for m in refs]

    async def _one(self, store: JobStore, job_id: str, m: ModelRef, names: dict[str, str], head: asyncio.Event):
        where = m.ref.where + (f" from modifications.{names[m.ref.source]}" if m.ref.source in names else "")
        shown, last = describe(m.ref.source), [0.0]

        def progress(done: int, total: int | None) -> None:
            head.set()  # reported only once its first bytes were sniffed a model, within the cap
            now = time.monotonic()
            if now - last[0] < PROGRESS_EVERY and done != total:
                return
            last[0] = now
            of = f" of {total}" if total else ""
            pct = f" ({100 * done // total}%)" if total else ""
            task = asyncio.get_running_loop().create_task(
                store.update(job_id, message=f"downloading model {shown}: {done}{of} bytes{pct}"))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        try:
            return await self.cache.obtain(m.ref.source, progress)
        except InputError as exc:
            raise exc.at(where, shown) from None

    # -- generation ---------------------------------------------------------------------------
    def shas(self, inputs: list[dict[str, Any]]) -> set[str]:
        return {i["sha256"] for i in inputs if i.get("model_folder")}

    def holds(self, backend: Backend, inputs: list[dict[str, Any]]) -> bool:
        shas = self.shas(inputs)
        return bool(shas) and self.delivery.holds(backend.name, shas)

    async def place(self, backend: Backend, item: dict[str, Any]) -> tuple[str, bool]:
        """(the name the backend lists the model under, whether it was sent just now)."""
        sha = item["sha256"]
        model = self.cache.get(sha)
        if model is None:  # evicted since preprocessing: had again from its source
            model = await self.cache.obtain(item["source"])
            if model.sha256 != sha:
                raise InputUnavailable("its content changed between its check and its delivery to ComfyUI") \
                    .at("a model input", describe(item["source"]))
        try:
            return await self.delivery.place(backend, model, item["model_folder"], self.cache.path(sha))
        except InputError as exc:
            raise exc.at("a model input", describe(item["source"])) from None

    def stats(self) -> dict[str, Any]:
        return {**self.cache.stats(), "transfers": self.delivery.transfers,
                "shared_models_dir": str(self.delivery.shared_dir) if self.delivery.shared_dir else None}
