"""Inline inputs (`data:` URIs) turned into stored assets once they are checked: the job then
names `asset://<sha256>` wherever the client sent the bytes inline, so its record stays a few
kilobytes however big the inputs (a 25 MB data: URI would otherwise be carried, and encoded,
with every change of the job). The bytes are kept under ASSETS_DIR for ASSET_TTL, like an
upload with POST /assets: with several processes that folder is shared (see the README), so
any process can upload them to its backend.
"""

from __future__ import annotations

from typing import Any

from .assets import asset_ref
from .cache import Blob
from .find import classify
from .resolver import InputResolver


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
