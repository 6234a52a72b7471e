"""How an input's source is shown in messages and logs: never credentials, never a whole
data: URI."""

from __future__ import annotations

from yarl import URL

MAX_SHOWN = 200


def describe(source: str) -> str:
    if source[:5].lower() == "data:":
        head = source[: source.find(",") + 1] if "," in source[:200] else source[:40]
        return f"{head}... ({len(source)} characters)"
    try:
        url = URL(source)
        if url.user or url.password:
            url = url.with_user(None)  # credentials in a URL stay out of answers and logs
        text = str(url)
    except (ValueError, TypeError):
        text = source
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."
