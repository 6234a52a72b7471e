"""Why a backend whose websocket is connected may still be kept out of the rotation: its
warm-up has not run yet, its circuit breaker is open, or a GPU fault is latched until its
ComfyUI restarts. The router asks `usable`; /health and /ready show `state`."""

from __future__ import annotations

from typing import Any, Callable

from .breaker import Breaker


class Rotation:
    def __init__(self, on_change: Callable[[], None]):
        self._on_change = on_change
        self.breaker = Breaker(threshold=3, cooldown=30.0)  # configured by the supervisor
        self.warmed = True  # False while a configured warm-up has not run on this connection
        self.warming = False
        self.warmups = 0
        self.warmup_seconds: float | None = None  # how long the last warm-up took
        self.warmup_error: str | None = None
        # A fatal GPU error: the backend stays out until its ComfyUI restarted. The prompt that
        # hit it is how a restart is told apart from a network blip (a restarted ComfyUI has
        # forgotten its history).
        self.fatal: str | None = None
        self.fatal_prompt: str | None = None

    @property
    def usable(self) -> bool:
        return self.warmed and self.fatal is None and self.breaker.closed

    def changed(self) -> None:
        self._on_change()

    def state(self, connected: bool) -> str:
        """One word for /health: ready | down | warming | cooling_down | probing | failed_until_restart."""
        if self.fatal is not None:
            return "failed_until_restart"
        if not connected:
            return "down"
        if self.breaker.state == "open":
            return "cooling_down"
        if self.breaker.state == "probing":
            return "probing"
        if not self.warmed:
            return "warming"
        return "ready"

    def view(self) -> dict[str, Any]:
        return {"breaker": self.breaker.view(), "warmed_up": self.warmed, "warmups": self.warmups,
                "warmup_seconds": self.warmup_seconds, "warmup_error": self.warmup_error,
                "fatal_error": self.fatal}
