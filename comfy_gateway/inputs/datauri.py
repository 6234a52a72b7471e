"""Decoding `data:` URIs (RFC 2397), base64 or percent-encoded, under a size cap."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_to_bytes

from .errors import InputInvalid, InputTooLarge


def decode_data_uri(uri: str, max_bytes: int) -> tuple[bytes, str | None]:
    """The bytes and the declared media type (None when the URI declares none)."""
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise InputInvalid("malformed data: URI: no ',' between the header and the data")
    params = [p.strip() for p in header.split(";")]
    is_base64 = params[-1].lower() == "base64"
    mediatype = params[0].lower() if params[0] and "/" in params[0] else None
    if is_base64:
        if "%" in payload:
            payload = unquote_to_bytes(payload).decode("ascii", "replace")
        compact = "".join(payload.split())  # line breaks are common in pasted base64
        if len(compact) * 3 // 4 > max_bytes + 2:  # refuse before decoding anything big
            raise _too_large(len(compact) * 3 // 4, max_bytes)
        compact += "=" * (-len(compact) % 4)
        try:
            if "-" in compact or "_" in compact:
                data = base64.b64decode(compact, altchars=b"-_", validate=True)
            else:
                data = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputInvalid(f"malformed data: URI: the base64 data does not decode ({exc})") from None
    else:
        if len(payload) > 3 * max_bytes:
            raise _too_large(len(payload) // 3, max_bytes)
        data = unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes)
    if not data:
        raise InputInvalid("the data: URI holds no data")
    return data, mediatype


def _too_large(size: int, max_bytes: int) -> InputTooLarge:
    return InputTooLarge(f"about {size} bytes, over the limit of {max_bytes} bytes (MAX_INPUT_BYTES)")
