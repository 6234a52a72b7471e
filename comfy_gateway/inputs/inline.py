"""Inline inputs (`data:` URIs) turned into stored assets once they are checked: the job then
names `asset://<sha256>` wherever the client sent the bytes inline, so its record stays a few
kilobytes however big the inputs (a 25 MB data: URI would otherwise be carried, and encoded,
with every change of the job). The bytes are kept under ASSETS_DIR for ASSET_TTL, like an
upload with POST /assets: with several processes that folder is shared (see the README), so
any process can upload them to its backend.

Big ones are stored as the request arrives, before the job is (`store_big_inline`): the job's
record is then small from its first write, and no change of the job encodes or decodes
megabytes on the event loop. One that does not decode is left as it is, for preprocessing to
refuse with the same message as any other bad input; the rest are stored by preprocessing.
"""

from __future__ import annotations

from typing import Any

from .assets import asset_ref
from .cache import Blob
from .find import classify
from .errors import InputError
from .resolver import InputResolver

BIG = 64 << 10  # characters of a data: URI from which it is stored as the request arrives


async def store_inline(resolver: InputResolver, blobs: dict[str, Blob]) -> dict[str, str]:
    """Save the bytes of every data: source among the checked blobs as an asset;
    {data: URI: asset://<sha256>}."""
    refs: dict[str, str] = {}
    for source, blob in blobs.items():
        if classify(source) == "data":
            await resolver.assets.save(blob.sha256, blob.data)
            refs[source] = asset_ref(blob.sha256)
    return refs


def replace_sources(value: Any, refs: dict[str, str]) -> Any:
    """`value` (a request: dicts, lists, strings) with every string that is a key of `refs`
    replaced by its value; the same object when nothing is replaced."""
    if not refs:
        return value
    if isinstance(value, str):
        return refs.get(value, value)
    if isinstance(value, dict):
        return {k: replace_sources(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [replace_sources(v, refs) for v in value]
    return value


async def store_big_inline(resolver: InputResolver, payload: dict[str, Any]) -> dict[str, Any]:
    """The request with each big data: URI in it stored as an asset and named by its reference
    (the same object when there is none)."""
    refs: dict[str, str] = {}
    for uri in _big_data_uris(payload):
        if uri in refs:
            continue
        try:
            blob, _ = await resolver.obtain_inline(uri)
            await resolver.assets.save(blob.sha256, blob.data)
        except (InputError, OSError):
            continue  # left as sent: preprocessing refuses it, or fails the job, with a message
        refs[uri] = asset_ref(blob.sha256)
    return replace_sources(payload, refs)


def _big_data_uris(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if len(value) >= BIG and classify(value) == "data" else []
    if isinstance(value, dict):
        return [uri for v in value.values() for uri in _big_data_uris(v)]
    if isinstance(value, list):
        return [uri for v in value for uri in _big_data_uris(v)]
    return []
