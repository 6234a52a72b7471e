"""How backends are named where people can see them.

COMFYUI_API_BASE lists backends as `URL` or `name=URL`. Two names come out of each entry:

- `label`: the configured name, or `backend-<index>` (0-based, in the order listed). This is
  all that /health and /ready show: both are open without an API key, so they reveal no
  address at all.
- `name`: host, port and path with any `user:password@` removed. Results, logs, /queue-info
  and /metrics (which need a key) use it; credentials never appear anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


@dataclass(frozen=True, slots=True)
class BackendSpec:
    url: str  # as configured, credentials included (only ever handed to the HTTP client)
    name: str  # host:port[/path], no credentials
    label: str  # configured name or backend-<index>, no address


def display_name(url: str) -> str:
    """host:port[/path] of a URL, without scheme or credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path.rstrip('/')}"


def parse_backends(spec: str) -> list[BackendSpec]:
    """Parse COMFYUI_API_BASE; raises ValueError naming the entry that is wrong."""
    out: list[BackendSpec] = []
    for index, raw in enumerate(e.strip() for e in spec.split(",") if e.strip()):
        label = f"backend-{index}"
        url = raw
        head, sep, rest = raw.partition("=")
        if sep and "://" not in head:  # name=URL (a URL's own '=' comes after its scheme)
            label, url = head.strip(), rest.strip()
            if not _LABEL.match(label):
                raise ValueError(f"COMFYUI_API_BASE entry {index}: the name must be letters, digits, '.', '_' "
                                 "or '-' (at most 64)")
        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            # The entry itself is not echoed: it may carry a password.
            raise ValueError(f"COMFYUI_API_BASE entry {index}: must be an http(s) URL, optionally as name=URL")
        out.append(BackendSpec(url=url, name=display_name(url), label=label))
    if not out:
        raise ValueError("COMFYUI_API_BASE names no backend")
    labels = [b.label for b in out]
    if len(set(labels)) != len(labels):
        raise ValueError("COMFYUI_API_BASE: two backends have the same name")
    return out


def redact(text: str | None, url: str, label: str) -> str | None:
    """`text` (an error message) with every form of the backend's address replaced by its label,
    for the views that must not reveal addresses."""
    if not text:
        return text
    parts = urlsplit(url)
    forms = {url, display_name(url), parts.netloc}
    if parts.hostname:
        forms.add(f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname)
        forms.add(parts.hostname)
    for form in sorted((f for f in forms if f), key=len, reverse=True):
        text = text.replace(form, label)
    if parts.port:  # e.g. aiohttp's "Connect call failed ('127.0.0.1', 8188)"
        text = re.sub(rf"(?<![\w.]){parts.port}(?![\w.])", "<port>", text)
    return text
