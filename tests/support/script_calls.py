"""Watching the Redis store's script calls, whichever way each goes (redis_scripts.py)."""

from __future__ import annotations

from typing import Any, Callable


def on_script_calls(store: Any, seen: Callable[[str, list[Any], list[Any]], None]) -> None:
    """`seen(name, keys, args)` before each script call of the store (names as in redis_lua.py)."""
    names = {script.script: name for name, script in store._scripts.items()}
    call = store._script_calls.call

    async def watched(script: Any, keys: Any, args: Any) -> Any:
        seen(names.get(script, "?"), list(keys), list(args))
        return await call(script, keys, args)
    store._script_calls.call = watched
