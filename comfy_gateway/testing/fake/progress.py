"""The ``progress_state`` frames of one running prompt: comfy_execution.progress's
ProgressRegistry and WebUIProgressHandler. Each frame carries every node running or finished."""
from __future__ import annotations

from typing import Any, Callable


class Progress:
    def __init__(self, send: Callable[[str, Any, str | None], None], prompt_id: str, sid: str | None):
        self.send, self.prompt_id, self.sid = send, prompt_id, sid
        self.nodes: dict[str, list] = {}  # node -> [state, value, max]

    def _entry(self, nid: str) -> list:
        return self.nodes.setdefault(nid, ["pending", 0, 1])

    def _send(self) -> None:
        pid = self.prompt_id
        self.send("progress_state", {"prompt_id": pid, "nodes": {
            n: {"value": v, "max": m, "state": s, "node_id": n, "prompt_id": pid, "display_node_id": n,
                "parent_node_id": None, "real_node_id": n}
            for n, (s, v, m) in self.nodes.items() if s != "pending"}}, self.sid)

    def start(self, nid: str) -> None:
        self._entry(nid)[:] = ["running", 0.0, 1.0]
        self._send()

    def update(self, nid: str, value, total) -> None:
        self._entry(nid)[:] = ["running", value, total]
        self._send()

    def finish(self, nid: str) -> None:
        e = self._entry(nid)
        e[0], e[1] = "finished", e[2]
        self._send()
