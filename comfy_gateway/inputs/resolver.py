"""From a source string in a workflow to checked bytes: fetched through the guard (URLs),
decoded (data: URIs) or read from the asset store; typed from content; cached by content;
one download for every request that asks for one URL at the same time."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import PurePosixPath

from yarl import URL

from ..net.guard import NetworkPolicy
from ..settings import Settings
from .assets import AssetStore, parse_ref
from .cache import Blob, ContentCache
from .datauri import decode_data_uri
from .describe import describe
from .errors import InputError, InputRefused, InputTooLarge, InputUnavailable, InputWrongType
from .fetch import FetchLimits, fetch_url, input_session
from .find import InputRef, classify
from .singleflight import SingleFlight
from .sniff import IMAGE_EXTENSIONS, extension, is_image, sniff

log = logging.getLogger(__name__)

# Hashing and sniffing a few megabytes takes milliseconds: off the event loop past this size.
THREAD_OVER = 1 << 20
# Distinct inputs one job may name, and how many of them are fetched at once.
MAX_INPUTS_PER_JOB = 64
PARALLEL_PER_JOB = 8


class InputResolver:
    def __init__(self, settings: Settings):
        self.policy = NetworkPolicy.parse(settings.asset_allowed_networks)
        self.limits = FetchLimits(
            max_bytes=settings.max_input_bytes, connect_timeout=settings.input_connect_timeout,
            total_timeout=settings.input_timeout, max_redirects=settings.input_max_redirects,
        )
        self.cache = ContentCache(settings.input_cache_bytes)
        self.assets = AssetStore(settings.assets_dir, settings.asset_ttl)
        self._flights: SingleFlight[tuple[Blob, str | None]] = SingleFlight()
        self._session = None
        self.downloads = 0  # bodies actually downloaded (cache hits and shared waits excluded)

    async def start(self) -> None:
        self._session = input_session(self.policy)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    # -- what preprocess asks -----------------------------------------------------------------
    async def resolve_all(self, refs: list[InputRef], names: dict[str, str]) -> dict[str, Blob]:
        """Every distinct source of the refs, checked, as {source: blob}. The first failure
        cancels the rest and is raised naming its input (`names` maps a source to how the
        client knows it, e.g. its modification key)."""
        by_source: dict[str, InputRef] = {}
        wants_image: set[str] = set()
        for ref in refs:
            by_source.setdefault(ref.source, ref)
            if ref.expects_image:
                wants_image.add(ref.source)
        if len(by_source) > MAX_INPUTS_PER_JOB:
            raise InputRefused(f"the workflow names {len(by_source)} inputs; at most {MAX_INPUTS_PER_JOB} are fetched")
        gate = asyncio.Semaphore(PARALLEL_PER_JOB)

        async def one(ref: InputRef) -> tuple[str, Blob]:
            async with gate:
                where = ref.where + (f" from modifications.{names[ref.source]}" if ref.source in names else "")
                return ref.source, await self.resolve(ref, where, expect_image=ref.source in wants_image)

        tasks = [asyncio.ensure_future(one(ref)) for ref in by_source.values()]
        try:
            return dict(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()

    async def resolve(self, ref: InputRef, where: str, *, expect_image: bool) -> Blob:
        try:
            blob, declared = await self._obtain(ref.kind, ref.source)
            if (expect_image or _declares_image(ref.source, declared)) and not is_image(blob.mime):
                raise InputWrongType(f"expected an image, but its content is {blob.mime}")
            return blob
        except InputError as exc:
            raise exc.at(where, describe(ref.source)) from None

    # -- what generation asks -----------------------------------------------------------------
    async def blob_for(self, source: str, sha256: str) -> Blob:
        """The bytes checked at preprocess, to upload to a backend: from the cache, or had
        again from their source if the cache let them go meanwhile."""
        blob = self.cache.get(sha256)
        if blob is not None:
            return blob
        try:
            kind = classify(source)
            if kind == "url":
                blob, _ = await self._flights.run(("url", source), lambda: self._download(source))
            else:
                blob, _ = await self._obtain(kind or "refused", source)
            if blob.sha256 != sha256:
                raise InputUnavailable("its content changed between its check and its upload to ComfyUI")
            return blob
        except InputError as exc:
            raise exc.at("an input", describe(source)) from None

    # -- what POST /assets asks ---------------------------------------------------------------
    async def store_asset(self, data: bytes, declared: str | None) -> tuple[Blob, float]:
        if len(data) > self.limits.max_bytes:
            raise InputTooLarge(f"{len(data)} bytes, over the limit of {self.limits.max_bytes} bytes (MAX_INPUT_BYTES)")
        blob = await self._blob(data)
        if declared and declared.startswith("image/") and not is_image(blob.mime):
            raise InputWrongType(f"sent as {declared}, but its content is {blob.mime}")
        return blob, await self.assets.save(blob.sha256, data)

    def expire_assets(self) -> int:
        return self.assets.expire()

    def stats(self) -> dict[str, int]:
        return {**self.cache.stats(), "downloads": self.downloads, "downloads_in_flight": len(self._flights)}

    # -- the three kinds of source ------------------------------------------------------------
    async def obtain_inline(self, uri: str) -> tuple[Blob, str | None]:
        """A data: URI's bytes, decoded (off the event loop when big) and within the limits."""
        return await self._obtain("data", uri)

    async def _obtain(self, kind: str, source: str) -> tuple[Blob, str | None]:
        if kind == "url":
            known = self.cache.by_url(source)
            if known is not None:
                return known
            return await self._flights.run(("url", source), lambda: self._download(source))
        if kind == "data":
            if len(source) > THREAD_OVER:
                data, declared = await asyncio.to_thread(decode_data_uri, source, self.limits.max_bytes)
            else:
                data, declared = decode_data_uri(source, self.limits.max_bytes)
            return await self._blob(data), declared
        if kind == "asset":
            sha = parse_ref(source)
            blob = self.cache.get(sha)
            return (blob or await self._blob(await self.assets.load(sha))), None
        scheme = source.split(":", 1)[0].lower()
        raise InputRefused(f"only http and https URLs, data: URIs and asset:// references are accepted, not {scheme!r}")

    async def _download(self, url: str) -> tuple[Blob, str | None]:
        started = time.perf_counter()
        data, declared = await fetch_url(self._session, url, self.policy, self.limits)
        self.downloads += 1
        blob = await self._blob(data)
        self.cache.remember_url(url, blob.sha256, declared)
        log.info("input %s: %d bytes of %s in %.3f s", describe(url), blob.size, blob.mime,
                 time.perf_counter() - started)
        return blob, declared

    async def _blob(self, data: bytes) -> Blob:
        if len(data) > THREAD_OVER:
            sha, mime = await asyncio.to_thread(_hash_and_sniff, data)
        else:
            sha, mime = _hash_and_sniff(data)
        blob = self.cache.get(sha)
        if blob is None:
            blob = Blob(sha, data, mime, extension(mime))
            self.cache.put(blob)
        return blob


def _hash_and_sniff(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), sniff(data)


def _declares_image(source: str, declared: str | None) -> bool:
    """Whether the source says it is an image: its Content-Type or data: media type, or the
    extension of its URL's path."""
    if declared and declared.split(";")[0].strip().lower().startswith("image/"):
        return True
    if classify(source) == "url":
        try:
            return PurePosixPath(URL(source).path).suffix.lower() in IMAGE_EXTENSIONS
        except ValueError:
            return False
    return False

