"""Reading a /history entry: the files it lists and how the prompt ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from .errors import ExecutionFailed, ExecutionInterrupted


@dataclass(frozen=True, slots=True)
class OutputRef:
    node_id: str
    output_type: str  # the key under the node's output: images, gifs, video, audio...
    filename: str
    subfolder: str
    type: str  # "output", or "temp" for previews
    format: str | None = None


def output_refs(entry: dict[str, Any]) -> Iterator[OutputRef]:
    """Every file any node produced, whatever the output key: any list of {filename, ...}."""
    for node_id, node_out in (entry.get("outputs") or {}).items():
        if not isinstance(node_out, dict):
            continue
        for key, items in node_out.items():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("filename"), str):
                    yield OutputRef(
                        node_id=str(node_id), output_type=key, filename=item["filename"],
                        subfolder=str(item.get("subfolder") or ""), type=str(item.get("type") or "output"),
                        format=item.get("format"),
                    )


def raise_for_status(entry: dict[str, Any]) -> None:
    """Raise the execution error an entry records; return quietly on success."""
    status = entry.get("status") or {}
    if status.get("status_str") == "success":
        return
    for name, data in reversed(status.get("messages") or []):
        if name == "execution_error":
            raise ExecutionFailed(data)
        if name == "execution_interrupted":
            raise ExecutionInterrupted(data)
    if status.get("status_str") == "error":
        raise ExecutionFailed({"exception_message": "ComfyUI reported an error without details"})
