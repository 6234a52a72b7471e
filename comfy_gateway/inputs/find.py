"""Finding the inputs a workflow names: URL strings, data: URIs and asset references among the
values of its nodes' inputs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator, Literal

Kind = Literal["url", "data", "asset", "refused"]
Path = tuple[str | int, ...]

_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*://", re.I)
_SPACE = re.compile(r"\s")


def classify(value: str) -> Kind | None:
    """What a string is as an input: None for an ordinary value (a prompt, a file name)."""
    head = value[:10].lower()
    if head.startswith("data:"):
        return "data"
    if _SPACE.search(value):
        return None  # text that merely mentions a URL is text
    if head.startswith(("http://", "https://")):
        return "url"
    if head.startswith("asset://"):
        return "asset"
    if head.startswith("file:") or _SCHEME.match(value):
        return "refused"  # file:, ftp:, gopher:... named so the client learns why
    return None


@dataclass(frozen=True, slots=True)
class InputRef:
    path: Path  # (node id, "inputs", input name, [list index...])
    source: str
    kind: Kind

    @property
    def where(self) -> str:
        node, _, name, *rest = self.path
        index = "".join(f"[{i}]" for i in rest)
        return f"node {node} input '{name}{index}'"

    @property
    def expects_image(self) -> bool:
        # LoadImage, LoadImageMask and most image loaders name the input "image"; a value
        # there that is not an image would only fail later inside ComfyUI.
        return "image" in str(self.path[2]).lower()


def find_inputs(workflow: dict[str, Any]) -> list[InputRef]:
    found: list[InputRef] = []
    for node_id, node in workflow.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if isinstance(inputs, dict):
            for name, value in inputs.items():
                found.extend(_walk(value, (str(node_id), "inputs", name)))
    return found


def _walk(value: Any, path: Path) -> Iterator[InputRef]:
    if isinstance(value, str):
        kind = classify(value)
        if kind is not None:
            yield InputRef(path, value, kind)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, (*path, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, key))


def set_at(workflow: dict[str, Any], path: Path, value: Any) -> None:
    target: Any = workflow
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
