"""How an input's source is shown in messages and logs: never credentials or a query string
(signed URLs carry their signature there), never a whole data: URI."""

from __future__ import annotations

from yarl import URL

MAX_SHOWN = 200


def describe(source: str) -> str:
    if source[:5].lower() == "data:":
        head = source[: source.find(",") + 1] if "," in source[:200] else source[:40]
        return f"{head}... ({len(source)} characters)"
    try:
        url = URL(source)
        hidden = "?..." if url.raw_query_string else ""
        text = str(url.with_user(None).with_query(None).with_fragment(None)) + hidden
    except (ValueError, TypeError):
        text = source
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."
