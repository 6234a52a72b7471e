"""Downloading one URL through the address guard, within a size cap, a connect timeout, a
total timeout and a redirect limit."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

import aiohttp

from .. import __version__
from ..net.guard import NetworkPolicy, UrlRefused, guarded_request, guarded_session
from .errors import InputInvalid, InputRefused, InputTooLarge, InputUnavailable

CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int
    connect_timeout: float
    total_timeout: float
    max_redirects: int
    # The settings an operator would change, named in messages.
    size_setting: str = "MAX_INPUT_BYTES"
    timeout_setting: str = "INPUT_TIMEOUT"


def input_session(policy: NetworkPolicy) -> aiohttp.ClientSession:
    """The one session input downloads share. No cookie jar (one client's cookies must never
    ride along with another's fetch) and no transparent decompression (the size cap counts the
    bytes that arrive; a gzip bomb stays a small body that is not an image)."""
    return guarded_session(
        policy, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
        headers={"User-Agent": f"comfy-gateway/{__version__} (input fetch)", "Accept-Encoding": "identity"},
    )


async def fetch_url(session: aiohttp.ClientSession, url: str, policy: NetworkPolicy,
                    limits: FetchLimits) -> tuple[bytes, str | None]:
    """The body and the Content-Type the server declared."""
    async with open_url(session, url, policy, limits) as resp:
        body = bytearray()
        async for chunk in resp.content.iter_chunked(CHUNK):
            body += chunk
            if len(body) > limits.max_bytes:
                raise _too_large("more than that", limits)
        return bytes(body), resp.headers.get("Content-Type")


@asynccontextmanager
async def open_url(session: aiohttp.ClientSession, url: str, policy: NetworkPolicy,
                   limits: FetchLimits) -> AsyncIterator[aiohttp.ClientResponse]:
    """A 200 response through the guard, its declared length within the cap, for the caller to
    read in chunks (counting them against `limits.max_bytes`) within `limits.total_timeout`.
    Every failure, the caller's reads included, comes out as an InputError."""
    try:
        async with asyncio.timeout(limits.total_timeout):
            resp = await guarded_request(
                session, "GET", url, policy, max_redirects=limits.max_redirects, what="refused",
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=limits.connect_timeout),
            )
            try:
                if resp.status != 200:
                    raise InputUnavailable(f"the server answered HTTP {resp.status} {resp.reason or ''}".rstrip())
                if resp.content_length is not None and resp.content_length > limits.max_bytes:
                    raise _too_large(f"{resp.content_length} bytes", limits)
                yield resp
            finally:
                resp.close()  # never pool a connection whose body was left unread
    except UrlRefused as exc:
        raise InputRefused(f"{exc}{_setting_for(str(exc))}") from None
    except ValueError as exc:  # yarl and the IDNA codec refuse malformed hosts, ports, brackets
        raise InputInvalid(f"not a valid URL: {exc}") from None
    except TimeoutError:
        raise InputUnavailable(
            f"not fetched within {limits.total_timeout:g} s ({limits.timeout_setting}; connecting may take "
            f"{limits.connect_timeout:g} s, INPUT_CONNECT_TIMEOUT)") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise InputUnavailable(f"could not be fetched: {type(exc).__name__}: {exc}") from None


def _setting_for(reason: str) -> str:
    """Which setting an operator would change, named for them in the message."""
    if "redirects" in reason:
        return " (INPUT_MAX_REDIRECTS)"
    if "public address" in reason:
        return " (ASSET_ALLOWED_NETWORKS)"
    return ""


def _too_large(size: str, limits: FetchLimits) -> InputTooLarge:
    return InputTooLarge(f"the body is {size}, over the limit of {limits.max_bytes} bytes ({limits.size_setting})")
