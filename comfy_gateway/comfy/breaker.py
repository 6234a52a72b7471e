"""A circuit breaker per backend: after BREAKER_THRESHOLD jobs in a row fail for the backend's
own reasons (it did not answer, lost the prompt, ran out of GPU memory), the backend leaves the
rotation for BREAKER_COOLDOWN seconds; then it is probed (the warm-up workflow, or /system_stats
and /queue answering) and rejoins only if the probe passes. Failures that are the workflow's
fault (rejected, a node raising, a cancel) say the backend works and end the row.

States: closed (in rotation) -> open (cooling down) -> probing -> closed, or open again.
"""

from __future__ import annotations

import time
from typing import Callable


class Breaker:
    def __init__(self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self.state = "closed"
        self.failures = 0  # backend-caused failures in a row
        self.trips = 0  # times it opened, since the start
        self.opened_at: float | None = None
        self.last_failure: str | None = None

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    def ok(self) -> None:
        """A job ran (or failed by its own fault): the row ends. An open breaker stays open: a
        job sent before it opened proves less than the probe will."""
        if self.state == "closed":
            self.failures = 0

    def close(self) -> None:
        """The probe passed."""
        self.state, self.opened_at, self.failures = "closed", None, 0

    def failure(self, reason: str) -> bool:
        """A backend-caused failure; True when this one opened the breaker."""
        self.failures += 1
        self.last_failure = reason
        if self.state == "closed" and self.failures >= self.threshold:
            self.open()
            return True
        return False

    def open(self) -> None:
        self.state, self.opened_at = "open", self._clock()
        self.trips += 1

    def probing(self) -> None:
        self.state = "probing"

    def cooldown_left(self) -> float:
        if self.state != "open" or self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown - self._clock())

    def view(self) -> dict:
        return {"state": self.state, "consecutive_failures": self.failures, "threshold": self.threshold,
                "trips": self.trips, "cooldown_left": round(self.cooldown_left(), 3)}
