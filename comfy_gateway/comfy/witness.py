"""What the websocket showed of one prompt's run, as the /history entry ComfyUI writes for it.

ComfyUI sends every output node's result in an `executed` frame before `execution_success`, a
cached node's too (shared/comfyui-protocol, 11_empty_save_cached, in 0.3.64, 0.3.75 and 0.33.0).
A successful run whose frames all reached this process therefore needs no `GET /history` to
know its outputs: one request fewer on the critical path of every job, for the gateway and for
ComfyUI. Anything less is left to /history, which stays the authority: a websocket gap while the
prompt was ours, an error or an interrupt (their details live in the entry's messages), or a
cached output node without its frame (as older ComfyUIs sent none).
"""

from __future__ import annotations

from typing import Any


class RunWitness:
    def __init__(self, workflow: dict[str, Any]):
        self._workflow = workflow
        self._outputs: dict[str, Any] = {}
        self._messages: list[list[Any]] = []
        self._cached: set[str] = set()
        self._started = self._succeeded = self._missed = False

    def see(self, kind: str | None, data: dict[str, Any]) -> None:
        if kind == "executed":
            output = data.get("output")
            if isinstance(output, dict):
                self._outputs[str(data.get("node"))] = output  # a node run again: its last result, as history keeps
        elif kind == "execution_start":
            self._started = True
            self._messages.append([kind, data])
        elif kind == "execution_cached":
            self._cached.update(str(n) for n in data.get("nodes") or [])
            self._messages.append([kind, data])
        elif kind == "execution_success":
            self._succeeded = True
            self._messages.append([kind, data])

    def missed_frames(self) -> None:
        """The websocket dropped (or was down) while the prompt was ours: frames may be lost."""
        self._missed = True

    def entry(self) -> dict[str, Any] | None:
        """The history entry the frames amount to, or None when only /history can tell."""
        if self._missed or not (self._started and self._succeeded):
            return None
        silent = self._cached - self._outputs.keys()
        if silent and not silent <= self._sources():
            return None  # a cached sink (maybe an output node) whose result no frame carried
        return {"outputs": dict(self._outputs),
                "status": {"status_str": "success", "completed": True, "messages": list(self._messages)}}

    def _sources(self) -> set[str]:
        """The nodes another node takes an input from; the others are sinks, as output nodes are."""
        sources = set()
        for node in self._workflow.values():
            inputs = node.get("inputs") if isinstance(node, dict) else None
            for value in (inputs or {}).values():
                if isinstance(value, list) and len(value) == 2:
                    sources.add(str(value[0]))
        return sources
