"""Step previews as ComfyUI sends them: binary websocket frames built exactly as server.py's
encode_bytes / send_image / send_image_with_metadata build them, chosen as
comfy_execution/progress.py and main.py choose (the metadata variant only to a client that
announced `supports_preview_metadata` in its first message).

    PREVIEW_IMAGE (1):               >I event, >I image type (1 JPEG, 2 PNG), image bytes
    PREVIEW_IMAGE_WITH_METADATA (4): >I event, >I len(json), json, image bytes
"""
from __future__ import annotations

import io
import json
import struct

from PIL import Image

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4


def preview_jpeg(step: int, steps: int, size: int = 64) -> bytes:
    """A small JPEG whose grey level tells the step (a real one shows the latent decoded)."""
    level = int(255 * step / max(steps, 1))
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (level, level, level)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def encode_bytes(event: int, data: bytes) -> bytes:
    return struct.pack(">I", event) + data


def preview_image(image: bytes, image_type: str = "JPEG") -> bytes:
    type_num = 2 if image_type == "PNG" else 1
    return encode_bytes(PREVIEW_IMAGE, struct.pack(">I", type_num) + image)


def preview_with_metadata(image: bytes, prompt_id: str, node_id: str, image_type: str = "JPEG") -> bytes:
    metadata = {"node_id": node_id, "prompt_id": prompt_id, "display_node_id": node_id, "parent_node_id": None,
                "real_node_id": node_id, "image_type": "image/png" if image_type == "PNG" else "image/jpeg"}
    metadata_json = json.dumps(metadata).encode("utf-8")
    return encode_bytes(PREVIEW_IMAGE_WITH_METADATA, struct.pack(">I", len(metadata_json)) + metadata_json + image)
