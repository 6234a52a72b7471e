"""A file's type from its content (libmagic through python-magic), never from its name."""

from __future__ import annotations

import mimetypes

import magic

# libmagic looks at the head of a file; a megabyte covers every format ComfyUI loads.
SNIFF_BYTES = 1 << 20

# Fixed extensions for what ComfyUI loads most, so the name does not depend on the host's
# mime.types; anything else asks the standard table.
EXTENSIONS = {
    "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
    "image/bmp": ".bmp", "image/tiff": ".tiff", "image/avif": ".avif", "image/heic": ".heic",
    "video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov", "video/x-matroska": ".mkv",
    "audio/mpeg": ".mp3", "audio/x-wav": ".wav", "audio/wav": ".wav", "audio/flac": ".flac",
    "audio/ogg": ".ogg", "application/json": ".json", "text/plain": ".txt",
}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic"}


def sniff(data: bytes) -> str:
    return magic.from_buffer(data[:SNIFF_BYTES], mime=True) or "application/octet-stream"


def extension(mime: str) -> str:
    return EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ".bin"


def is_image(mime: str) -> bool:
    # SVG is XML text: PIL cannot open it and it may carry script, so it is no image here.
    return mime.startswith("image/") and mime != "image/svg+xml"
