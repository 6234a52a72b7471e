"""API keys and who they stand for.

Three ways to run, from the settings:
  * nothing set: no authentication, every caller is the admin "anonymous" (loopback only!);
  * API_KEYS (comma-separated): every key an admin without limits, named `api_keys[<n>]`;
  * API_KEYS_FILE (TOML): named keys, each with its own limits, seeing only its own jobs
    unless it is an admin. Read again on SIGHUP (see KeyRing.reload).

A presented key is hashed (SHA-256) and compared with every known digest in constant time,
without stopping at the first match: the answer's timing says nothing about which key, or how
much of one, was right. Keys are never logged; only names are.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_PRIORITY = 1000  # the store orders by -priority * 2**40 + sequence: exact up to this


@dataclass(frozen=True)
class ApiKey:
    """The caller behind a request: a key's name and what it may do (never the key itself)."""

    name: str
    admin: bool = False
    max_queued: int | None = None  # jobs waiting or running at once; None: no limit
    max_priority: int = 0
    scoped: bool = False  # True under API_KEYS_FILE: a non-admin sees only its own jobs

    def sees_all(self) -> bool:
        return self.admin or not self.scoped


ANONYMOUS = ApiKey("anonymous", admin=True, max_priority=MAX_PRIORITY)


class KeysFileError(ValueError):
    """The keys file cannot be used as a whole; the message says where and why (never a key)."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_keys_file(path: Path) -> list[tuple[bytes, ApiKey]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeysFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise KeysFileError(f"{path}: not valid TOML ({exc})") from None
    keys = data.get("keys")
    if not isinstance(keys, dict) or not keys:
        raise KeysFileError(f"{path}: no [keys.<name>] table")
    out: list[tuple[bytes, ApiKey]] = []
    seen: set[bytes] = set()
    for name, entry in keys.items():
        where = f"{path}: [keys.{name}]"
        if not NAME.match(name):
            raise KeysFileError(f"{where}: a name is 1-64 letters, digits, '_', '.' or '-'")
        if not isinstance(entry, dict):
            raise KeysFileError(f"{where}: must be a table")
        out.append(_entry(name, entry, where, seen))
    return out


def _entry(name: str, entry: dict[str, Any], where: str, seen: set[bytes]) -> tuple[bytes, ApiKey]:
    unknown = set(entry) - {"key", "key_sha256", "max_queued", "max_priority", "admin"}
    if unknown:
        raise KeysFileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    if ("key" in entry) == ("key_sha256" in entry):
        raise KeysFileError(f"{where}: give exactly one of key_sha256 or key")
    if "key" in entry:
        if not isinstance(entry["key"], str) or len(entry["key"]) < 16:
            raise KeysFileError(f"{where}: key must be a string of at least 16 characters")
        digest = _digest(entry["key"])
    else:
        hexed = entry["key_sha256"]
        if not isinstance(hexed, str) or not HEX64.match(hexed):
            raise KeysFileError(f"{where}: key_sha256 must be 64 lowercase hex digits (sha256sum)")
        digest = bytes.fromhex(hexed)
    if digest in seen:
        raise KeysFileError(f"{where}: the same key as another entry")
    seen.add(digest)
    max_queued = entry.get("max_queued")
    if max_queued is not None and (type(max_queued) is not int or max_queued < 1):
        raise KeysFileError(f"{where}: max_queued must be an integer of at least 1")
    max_priority = entry.get("max_priority", 0)
    if type(max_priority) is not int or not 0 <= max_priority <= MAX_PRIORITY:
        raise KeysFileError(f"{where}: max_priority must be an integer from 0 to {MAX_PRIORITY}")
    admin = entry.get("admin", False)
    if type(admin) is not bool:
        raise KeysFileError(f"{where}: admin must be true or false")
    return digest, ApiKey(name, admin=admin, max_queued=max_queued, max_priority=max_priority, scoped=True)


class KeyRing:
    """The keys a gateway accepts now. `match` is safe to call while `reload` swaps the list:
    the swap is one assignment."""

    def __init__(self, keys_file: Path | None, api_keys: list[bytes]):
        self.keys_file = keys_file
        self._entries: list[tuple[bytes, ApiKey]] = []
        if keys_file is not None:
            self._entries = parse_keys_file(keys_file)  # at start a bad file stops the gateway
            log.info("API keys: %d from %s (%s)", len(self._entries), keys_file,
                     ", ".join(k.name for _, k in self._entries))
        else:
            self._entries = [(hashlib.sha256(k).digest(), ApiKey(f"api_keys[{i}]", admin=True,
                                                                 max_priority=MAX_PRIORITY))
                             for i, k in enumerate(api_keys)]

    @property
    def enabled(self) -> bool:
        return bool(self._entries) or self.keys_file is not None

    @property
    def scoped(self) -> bool:
        """Jobs belong to keys (API_KEYS_FILE): ids and visibility depend on the caller."""
        return self.keys_file is not None

    def match(self, given: str) -> ApiKey | None:
        digest = _digest(given)
        found: ApiKey | None = None
        for known, key in self._entries:  # every entry, each in constant time
            if hmac.compare_digest(digest, known):
                found = key
        return found

    def names(self) -> list[str]:
        return [k.name for _, k in self._entries]

    def reload(self) -> bool:
        """Read API_KEYS_FILE again (SIGHUP). A file that cannot be used keeps the keys in
        force and says why; a key no longer listed is refused from the next request on."""
        if self.keys_file is None:
            return False
        try:
            entries = parse_keys_file(self.keys_file)
        except KeysFileError as exc:
            log.error("API_KEYS_FILE not reloaded, the %d key(s) in force stay: %s", len(self._entries), exc)
            return False
        before = set(self.names())
        self._entries = entries
        after = set(self.names())
        log.info("API_KEYS_FILE reloaded: %d key(s)%s%s", len(entries),
                 f"; added {', '.join(sorted(after - before))}" if after - before else "",
                 f"; removed {', '.join(sorted(before - after))}" if before - after else "")
        return True
