"""ComfyUI's binary websocket frames: live previews of a running node.

As ComfyUI's server.py builds them (encode_bytes, send_image, send_image_with_metadata):

    frame   = uint32 big-endian event type, then the payload
    type 1  PREVIEW_IMAGE: uint32 image type (1 JPEG, 2 PNG), then the image bytes; sent to
            clients that did not announce `supports_preview_metadata`, it names no prompt
    type 4  PREVIEW_IMAGE_WITH_METADATA: uint32 length of a JSON object, the JSON
            ({node_id, prompt_id, display_node_id, parent_node_id, real_node_id, image_type}),
            then the image bytes; sent when the client announced the feature flag (we do)

Other binary types (3 TEXT, progress text of some nodes) are not previews and are ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import orjson

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
IMAGE_TYPES = {1: "image/jpeg", 2: "image/png"}
MAX_METADATA = 64 * 1024


@dataclass(frozen=True, slots=True)
class PreviewFrame:
    image: bytes
    mime: str
    prompt_id: str | None = None  # named by the metadata variant only
    node_id: str | None = None


def parse_frame(data: bytes) -> PreviewFrame | None:
    """The preview a binary frame carries, or None when it carries none (or is malformed)."""
    if len(data) < 8:
        return None
    (event,) = struct.unpack_from(">I", data, 0)
    if event == PREVIEW_IMAGE:
        (image_type,) = struct.unpack_from(">I", data, 4)
        return PreviewFrame(image=bytes(data[8:]), mime=IMAGE_TYPES.get(image_type, "image/jpeg"))
    if event == PREVIEW_IMAGE_WITH_METADATA:
        (length,) = struct.unpack_from(">I", data, 4)
        if length > MAX_METADATA or 8 + length > len(data):
            return None
        try:
            meta = orjson.loads(data[8:8 + length])
        except orjson.JSONDecodeError:
            return None
        if not isinstance(meta, dict):
            return None
        node = meta.get("node_id")
        prompt = meta.get("prompt_id")
        return PreviewFrame(image=bytes(data[8 + length:]), mime=str(meta.get("image_type") or "image/jpeg"),
                            prompt_id=str(prompt) if prompt is not None else None,
                            node_id=str(node) if node is not None else None)
    return None


@dataclass(frozen=True, slots=True)
class Preview:
    """One step's preview of a job: which node, which step, and the image."""

    node: str | None
    node_type: str | None
    value: float
    max: float
    mime: str
    image: bytes
