"""The address guard for every URL a client chooses: only http(s), and never loopback, private,
link-local, cloud-metadata or any other non-global address, unless the operator allows it
(ASSET_ALLOWED_NETWORKS: comma-separated CIDRs and host names).

Names are checked where they are resolved: the session's resolver drops every refused address,
so the connection goes only to an address that was checked (no DNS-rebinding window between
the check and the connect). Literal IPs never reach a resolver, so each URL, and each redirect
hop, is checked before the request (see `guarded_request`).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(ValueError):
    """The URL may not be fetched; the message says why, without fetching anything."""


class _ResolvedToRefused(OSError):
    pass


@dataclass(frozen=True)
class NetworkPolicy:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, spec: str | None) -> "NetworkPolicy":
        nets, hosts = [], set()
        for item in (spec or "").split(","):
            item = item.strip()
            if not item:
                continue
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(tuple(nets), frozenset(hosts))

    def allows_ip(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address):
            if any(ip in net for net in self.networks):
                return True
            if any(ip in net for net in _NOT_GLOBAL_V6):
                return False
            embedded = _embedded_ipv4(ip)
            if embedded is not None:
                ip = embedded  # judged as the IPv4 address a network may route it to
        if any(ip in net for net in self.networks):
            return True
        return ip.is_global and not ip.is_multicast

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts


# Python counts these as global; they are not public destinations: NAT64 for local use
# (RFC 8215) and the deprecated site-local range.
_NOT_GLOBAL_V6 = (ipaddress.IPv6Network("64:ff9b:1::/48"), ipaddress.IPv6Network("fec0::/10"))
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries and some networks deliver to: mapped
    (::ffff:127.0.0.1), NAT64 (64:ff9b::a9fe:a9fe is 169.254.169.254 behind a NAT64 gateway),
    6to4 (2002:7f00:1::), IPv4-compatible (::127.0.0.1)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _V4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def check_url(url: str | URL, policy: NetworkPolicy, *, what: str = "URL") -> URL:
    """Refuse what can be refused without a DNS look-up: scheme, missing host, literal IPs."""
    u = URL(url) if isinstance(url, str) else url
    if u.scheme not in ("http", "https"):
        raise UrlRefused(f"{what}: only http and https are allowed, not {u.scheme or 'no scheme'!r}")
    host = u.raw_host
    if not host:
        raise UrlRefused(f"{what}: has no host")
    if policy.allows_host(host):
        return u
    ip = _literal_ip(host)
    if ip is None:
        return u  # a name: checked on resolution
    if not policy.allows_ip(ip):
        raise UrlRefused(f"{what}: address {ip} is not a public address")
    return u


def _literal_ip(host: str) -> IPAddress | None:
    """The address a literal host means, in any notation C's inet_aton accepts too
    (2130706433, 0x7f.1, 017700000001, 127.1 are all 127.0.0.1)."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


class GuardedResolver(AbstractResolver):
    """Resolves, then keeps only the addresses the policy allows."""

    def __init__(self, policy: NetworkPolicy, inner: AbstractResolver | None = None):
        self._policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._policy.allows_host(host):
            return results
        allowed = [r for r in results if self._policy.allows_ip(ipaddress.ip_address(r["host"]))]
        if not allowed:
            addrs = ", ".join(sorted({r["host"] for r in results}))
            raise _ResolvedToRefused(f"host {host!r} resolves to {addrs}, not a public address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def guarded_session(policy: NetworkPolicy, **kwargs: Any) -> aiohttp.ClientSession:
    """A session whose every connection goes to an address the policy allows. It ignores
    proxy variables: a proxy would connect on our behalf to whatever the name resolves to."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy), limit=64, ttl_dns_cache=None,
                                     use_dns_cache=False)
    return aiohttp.ClientSession(connector=connector, trust_env=False, **kwargs)


async def guarded_request(
    session: aiohttp.ClientSession, method: str, url: str, policy: NetworkPolicy, *,
    max_redirects: int = 5, what: str = "URL", **kwargs: Any,
) -> aiohttp.ClientResponse:
    """Send a request, following redirects by hand so that every hop is checked. The caller
    reads and releases the returned response."""
    current = check_url(url, policy, what=what)
    for _ in range(max_redirects + 1):
        try:
            resp = await session.request(method, current, allow_redirects=False, **kwargs)
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error if isinstance(exc.os_error, _ResolvedToRefused) else exc.__cause__
            if isinstance(cause, _ResolvedToRefused):
                raise UrlRefused(f"{what}: {cause}") from None
            raise
        except _ResolvedToRefused as exc:
            raise UrlRefused(f"{what}: {exc}") from None
        except aiohttp.InvalidURL as exc:
            raise UrlRefused(f"{what}: not a valid URL: {exc}") from None
        if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
            target = current.join(URL(resp.headers["Location"]))
            resp.release()
            current = check_url(target, policy, what=f"{what} (redirected)")
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, kwargs = "GET", {k: v for k, v in kwargs.items() if k not in ("data", "json")}
            continue
        return resp
    raise UrlRefused(f"{what}: more than {max_redirects} redirects")
