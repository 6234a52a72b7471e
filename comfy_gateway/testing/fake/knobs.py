"""The fake's knobs (what tests tell it to do, via FakeComfyUI.set or POST /fake/control) and
its stats (what it counts, GET /fake/stats). Both are mutated in place, so every part of the
server that holds one sees resets."""
from __future__ import annotations

from typing import Any

DEFAULT_KNOBS: dict[str, Any] = {
    "node_delay": 0.0,             # seconds added to every executed node
    "class_delay": {},             # {class_type: seconds} added to nodes of that class
    "history_lag": 0.0,            # seconds between the last frame (executing None) and the history write
    "fail_next": 0,                # next N prompts fail with execution_error at their first node
    "drop_ws_after_frames": None,  # close every websocket after N more frames (None: never)
    "refuse_ws": False,            # answer websocket upgrades with 503
    "hang": False,                 # executor picks no new prompt
    "down": False,                 # every non-/fake route answers 503, sockets are dropped
    "cache": False,                # ComfyUI's classic output cache (identical nodes are not re-run)
    # Faults of what lies between a client and ComfyUI (issue 10):
    "prompt_reply_delay": 0.0,     # seconds POST /prompt waits to answer after queueing the prompt
    "proxy_error_next": 0,         # next N POST /prompt are queued, then answered proxy_error_status
    "proxy_error_status": 502,     # what a proxy answers when its upstream's answer is lost (502/504)
    "history_fail_next": 0,        # next N GET /history/{id} answer 500
    "previews": False,             # a binary preview frame with every progress step (FakeSlow steps)
    "oom_next": 0,                 # next N prompts run out of GPU memory at their first node
    "cuda_fatal_next": 0,          # next N prompts hit a fatal CUDA error; the GPU stays broken until restart
}
ACTIONS = ("drop_ws_now", "restart")  # one-shot knobs: true runs the action
STATS_COUNTERS = ("prompts_received", "prompts_rejected", "prompts_executed", "max_queue_length",
                  "ws_connections_opened", "ws_connections_refused", "frames_sent", "free_requests",
                  "previews_sent", "history_requests")


class Knobs:
    """The current knob values; ``knobs["fail_next"] -= 1`` is how the executor uses one up."""

    def __init__(self) -> None:
        self.reset()

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._values[key] = value

    def snapshot(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._values.items()}

    def reset(self) -> None:
        self._values = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT_KNOBS.items()}

    def merge(self, knobs: dict[str, Any]) -> None:
        """Check and convert every value first, then apply them all (a bad one changes nothing).

        Action keys are accepted but not stored: the caller runs them."""
        unknown = set(knobs) - set(DEFAULT_KNOBS) - set(ACTIONS)
        if unknown:
            raise ValueError(f"unknown knob(s): {sorted(unknown)}")
        new = dict(self._values)
        for k, v in knobs.items():
            if k == "class_delay":
                v = {str(c): float(d) for c, d in dict(v).items()}
                if any(d < 0 for d in v.values()):
                    raise ValueError("knob class_delay: every delay must be >= 0")
                new[k] = v
                continue
            if k in ("node_delay", "history_lag", "prompt_reply_delay"):
                v = float(v)
            elif k in ("fail_next", "proxy_error_next", "proxy_error_status", "history_fail_next",
                       "oom_next", "cuda_fatal_next") or (k == "drop_ws_after_frames" and v is not None):
                v = int(v)
            elif k != "drop_ws_after_frames":
                v = bool(v)
            if v is not None and not isinstance(v, bool) and v < 0:
                raise ValueError(f"knob {k} must be >= 0")
            new[k] = v
        for k in DEFAULT_KNOBS:
            self._values[k] = new[k]


class Stats(dict):
    """The counters of GET /fake/stats (the server adds its live gauges when reporting)."""

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.clear()
        self.update(dict.fromkeys(STATS_COUNTERS, 0))
