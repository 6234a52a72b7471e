"""Converting image outputs to WebP or JPEG (Pillow), on request.

Only still images are converted; anything else (video, audio, an animated image) is left as
ComfyUI made it, with the reason, so a client never gets a silently truncated animation.
The original is replaced by the converted file. ComfyUI's PNG text chunks (the embedded
workflow) do not survive: WebP and JPEG have no place for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

FORMATS = {"webp": ("WEBP", ".webp", "image/webp"), "jpeg": ("JPEG", ".jpg", "image/jpeg")}


@dataclass(frozen=True)
class Converted:
    path: Path
    content_type: str
    size: int


class NotConverted(Exception):
    """The file stays as it is; the message says why (shown to the client as a warning)."""


def convert_image(src: Path, fmt: str, quality: int) -> Converted:
    """Write `src` as `fmt` beside it (same stem, new suffix) and delete `src`. Blocking: run it
    in a thread. Raises NotConverted when the file is not a still image Pillow can write."""
    pil_format, suffix, content_type = FORMATS[fmt]
    dst = src.with_suffix(suffix)
    tmp = dst.with_name(dst.name + ".part")
    try:
        with Image.open(src) as img:
            if getattr(img, "is_animated", False):
                raise NotConverted(f"{src.name}: animated images are left as they are")
            if img.format == pil_format:
                return Converted(src, content_type, src.stat().st_size)  # already what was asked
            has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            if pil_format == "JPEG":
                frame = img.convert("L" if img.mode in ("L", "I;16", "I") else "RGB")  # JPEG has no alpha
            else:
                frame = img.convert("RGBA" if has_alpha else "RGB")
            frame.save(tmp, format=pil_format, quality=quality)
    except NotConverted:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise NotConverted(f"{src.name}: not a still image Pillow can read ({type(exc).__name__})") from None
    except (OSError, ValueError) as exc:  # e.g. WebP's 16383-pixel limit
        tmp.unlink(missing_ok=True)
        raise NotConverted(f"{src.name}: could not be written as {fmt}: {exc}") from None
    tmp.replace(dst)
    if dst != src:
        src.unlink(missing_ok=True)
    return Converted(dst, content_type, dst.stat().st_size)


def converted_name(rel: str, fmt: str) -> str:
    return str(PurePosixPath(rel).with_suffix(FORMATS[fmt][1]))
