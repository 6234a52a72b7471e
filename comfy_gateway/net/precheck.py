"""Refuse a client-chosen URL before using it, with a message that says why.

The guarded session's resolver is what enforces the policy at connect time (no DNS-rebinding
window); this look-up only turns a refusal into a clear error up front, instead of the
"cannot connect" an SDK would report after its retries.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.resolver import DefaultResolver

from .guard import NetworkPolicy, UrlRefused, _literal_ip, check_url


async def precheck_url(url: str, policy: NetworkPolicy, *, what: str) -> None:
    """Raise UrlRefused when the URL's scheme, literal address, or every address its host name
    resolves to is refused by the policy. A name that does not resolve passes: connecting will
    fail on its own, with the resolver's message."""
    u = check_url(url, policy, what=what)
    host = u.raw_host or ""
    if policy.allows_host(host) or _literal_ip(host) is not None:
        return  # allowed by name, or a literal address check_url has judged
    resolver = DefaultResolver()
    try:
        results = await resolver.resolve(host, u.port or 0, socket.AF_UNSPEC)
    except OSError:
        return
    finally:
        await resolver.close()
    addrs = sorted({r["host"] for r in results})
    if addrs and not any(policy.allows_ip(ipaddress.ip_address(a)) for a in addrs):
        raise UrlRefused(f"{what}: host {host!r} resolves to {', '.join(addrs)}, not a public address")
