"""The graph side of execution, ported from ComfyUI 0.3.75: ExecutionList's node order
(comfy_execution/graph.py), classic-cache signatures, and the inputs a node is called with."""
from __future__ import annotations

import hashlib
import json

from comfy_gateway.testing.fake.nodes import Node, input_info, is_link


class ExecutionList:
    """comfy_execution.graph.ExecutionList: same node order, output nodes first when ready."""

    def __init__(self, prompt: dict, nodes: dict[str, Node], is_cached):
        self.prompt, self.nodes, self.is_cached = prompt, nodes, is_cached
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict] = {}

    def _is_output(self, nid: str) -> bool:
        return self.nodes[self.prompt[nid]["class_type"]].OUTPUT_NODE

    def add_node(self, node_id: str) -> None:
        stack, links = [node_id], []
        while stack:
            uid = stack.pop()
            if uid in self.pending:
                continue
            self.pending[uid], self.block_count[uid], self.blocking[uid] = True, 0, {}
            for value in self.prompt[uid]["inputs"].values():
                if is_link(value):
                    if not self.is_cached(value[0]):
                        stack.append(value[0])
                    links.append((value[0], uid))
        for frm, to in links:
            if not self.is_cached(frm):
                self.add_node(frm)
                if to not in self.blocking[frm]:
                    self.blocking[frm][to] = True
                    self.block_count[to] += 1

    def empty(self) -> bool:
        return not self.pending

    def next_node(self) -> str:
        ready = [n for n in self.pending if self.block_count[n] == 0]
        for n in ready:
            if self._is_output(n):
                return n
        for n in ready:
            if any(self._is_output(b) for b in self.blocking[n]):
                return n
        for n in ready:
            if any(self._is_output(b2) for b in self.blocking[n] for b2 in self.blocking[b]):
                return n
        if not ready:
            raise RuntimeError("Dependency cycle detected")
        return ready[0]

    def complete(self, nid: str) -> None:
        del self.pending[nid]
        for b in self.blocking.pop(nid):
            self.block_count[b] -= 1


def node_signatures(prompt: dict, nodes: dict[str, Node]) -> dict[str, str]:
    """Cache keys like ComfyUI's classic cache: class, IS_CHANGED, inputs and ancestors."""
    sigs: dict[str, str] = {}

    def sig(nid: str) -> str:
        if nid not in sigs:
            node = prompt[nid]
            parts = [node["class_type"], nodes[node["class_type"]].is_changed(node["inputs"])]
            for k in sorted(node["inputs"]):
                v = node["inputs"][k]
                parts.append([k, ["ANCESTOR", sig(v[0]), v[1]] if is_link(v) else v])
            sigs[nid] = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        return sigs[nid]

    for nid in prompt:
        sig(nid)
    return sigs


def get_input_data(node: Node, inputs: dict, outputs: dict, prompt: dict, extra_data: dict) -> dict:
    """execution.get_input_data: {name: [value]} for the node's call, hidden inputs included."""
    class_inputs = node.input_types()
    data = {}
    for x, v in inputs.items():
        _, category, _ = input_info(class_inputs, x)
        if is_link(v):
            src = outputs.get(v[0])
            data[x] = [src[v[1]]] if src is not None and v[1] < len(src) else [None]
        elif category is not None:
            data[x] = [v]
    for x, kind in class_inputs.get("hidden", {}).items():
        if kind == "PROMPT":
            data[x] = [prompt]
        elif kind == "EXTRA_PNGINFO":
            data[x] = [extra_data.get("extra_pnginfo")]
    return data
