"""What can go wrong on the ComfyUI side, as exceptions the pipeline turns into job errors."""

from __future__ import annotations

from typing import Any


class BackendError(Exception):
    """The backend did not answer, or answered something the protocol does not allow."""


class PromptNotAccepted(BackendError):
    """POST /prompt certainly did not queue the prompt (no connection, or a 5xx answer): it can
    go to another backend without any risk of running twice."""


class PromptOutcomeUnknown(BackendError):
    """POST /prompt was sent but its answer was lost (a read timeout, a dropped connection, a
    502/504 from a proxy in front of ComfyUI): the prompt may be queued, running or done. Only
    asking ComfyUI (/queue, then /history) can tell; sending it anywhere again could run it twice."""


class PromptRejected(Exception):
    """ComfyUI refused the prompt at validation (HTTP 400 with error and node_errors)."""

    def __init__(self, body: dict[str, Any]):
        err = body.get("error") if isinstance(body.get("error"), dict) else {}
        self.error: dict[str, Any] = err or {"type": "invalid_prompt", "message": str(body)}
        self.node_errors: dict[str, Any] = body.get("node_errors") or {}
        super().__init__(self.error.get("message", "prompt rejected by ComfyUI"))


class ExecutionFailed(Exception):
    """A node raised while running: ComfyUI's execution_error, with node and exception."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        node = data.get("node_type") or data.get("node_id") or "?"
        msg = str(data.get("exception_message", "")).strip() or "node failed"
        super().__init__(f"{node} (node {data.get('node_id')}): {msg}")


class ExecutionInterrupted(Exception):
    def __init__(self, data: dict[str, Any]):
        self.data = data
        super().__init__(f"interrupted at node {data.get('node_id')} ({data.get('node_type')})")


class PromptLost(Exception):
    """The backend no longer knows the prompt: neither queued, running nor in history
    (a restarted ComfyUI forgets both)."""


class PromptCancelled(Exception):
    """The gateway withdrew the prompt (cancel or timeout): deleted from ComfyUI's queue or
    interrupted there."""
