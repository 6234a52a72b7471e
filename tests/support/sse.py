"""A small server-sent-events reader over httpx, as a browser's EventSource would parse."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import httpx


@dataclass
class Event:
    id: str | None
    event: str
    data: dict[str, Any]


@dataclass
class Stream:
    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    status_code: int = 0


async def read_events(response: httpx.Response, comments: list[str] | None = None) -> AsyncIterator[Event]:
    fields: dict[str, str] = {}
    data_lines: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data_lines or fields:
                yield Event(fields.get("id"), fields.get("event", "message"), json.loads("\n".join(data_lines)))
            fields, data_lines = {}, []
            continue
        if line.startswith(":"):
            if comments is not None:
                comments.append(line)
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data_lines.append(value)
        else:
            fields[name] = value


async def collect(client: httpx.AsyncClient, method: str, url: str, *, json_body: Any = None,
                  headers: dict[str, str] | None = None, stop_after: int | None = None) -> Stream:
    """Read a stream to its final_result event (or stop_after events)."""
    out = Stream()
    async with client.stream(method, url, json=json_body, headers=headers, timeout=120) as resp:
        out.status_code = resp.status_code
        if resp.status_code != 200:
            await resp.aread()
            return out
        async for ev in read_events(resp, out.comments):
            out.events.append(ev)
            if ev.event == "final_result" or (stop_after and len(out.events) >= stop_after):
                break
    return out
