"""Wire facts several parts of the fake share: what ComfyUI 0.3.75 advertises as its features,
its timestamps, and the shape of a websocket frame."""
from __future__ import annotations

import json
import time
from typing import Any

MAX_UPLOAD_SIZE = 100 * 1024 * 1024
FEATURES = {"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_SIZE}


def now_ms() -> int:
    return int(time.time() * 1000)


def frame(event: str, data: Any) -> str:
    """One websocket text frame: {"type": event, "data": data}."""
    return json.dumps({"type": event, "data": data})
