"""Decoding `data:` URIs (RFC 2397), base64 or percent-encoded, under a size cap."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_to_bytes

from .errors import InputInvalid, InputTooLarge

# Characters of base64 decoded per call. The resolver decodes big URIs in a thread, but the
# decoder holds the GIL for the whole call: 25 MB at once held the event loop ~100 ms. Between
# two slices the event loop gets the GIL back (after sys.getswitchinterval(), 5 ms).
SLICE = 256 << 10


def decode_data_uri(uri: str, max_bytes: int) -> tuple[bytes, str | None]:
    """The bytes and the declared media type (None when the URI declares none)."""
    comma = uri.find(",")
    if comma < 0:
        raise InputInvalid("malformed data: URI: no ',' between the header and the data")
    header = uri[5:comma]
    params = [p.strip() for p in header.split(";")]
    is_base64 = params[-1].lower() == "base64"
    mediatype = params[0].lower() if params[0] and "/" in params[0] else None
    if is_base64:
        if uri.find("%", comma) >= 0:
            data = _b64decode(unquote_to_bytes(uri[comma + 1:]).decode("ascii", "replace"), 0, max_bytes)
        else:  # no copy of the payload: slices are read from the URI itself
            data = _b64decode(uri, comma + 1, max_bytes)
    else:
        payload = uri[comma + 1:]
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


def _b64decode(payload: str, offset: int, max_bytes: int) -> bytes:
    """payload[offset:] as base64 (standard or URL-safe alphabet, line breaks and missing
    padding tolerated), slice by slice; refused once more than max_bytes came out."""
    parts: list[bytes] = []
    size, carry = 0, ""
    for start in range(offset, len(payload), SLICE):
        piece = carry + "".join(payload[start:start + SLICE].split())  # pasted base64 has line breaks
        cut = len(piece) - len(piece) % 4
        piece, carry = piece[:cut], piece[cut:]
        if piece.endswith("=") and payload[start + SLICE:].strip():
            raise InputInvalid("malformed data: URI: padding ('=') before the end of the base64 data")
        parts.append(_decode_group(piece))
        size += len(parts[-1])
        if size > max_bytes + 2:  # refuse before decoding the rest
            raise _too_large((len(payload) - offset) * 3 // 4, max_bytes)
    if carry:
        parts.append(_decode_group(carry + "=" * (-len(carry) % 4)))
    return b"".join(parts)


def _decode_group(piece: str) -> bytes:
    try:
        if "-" in piece or "_" in piece:
            return base64.b64decode(piece, altchars=b"-_", validate=True)
        return base64.b64decode(piece, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputInvalid(f"malformed data: URI: the base64 data does not decode ({exc})") from None
