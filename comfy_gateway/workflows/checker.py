"""Would a backend accept this workflow? Asked before a job is queued for ComfyUI, so that a
workflow ComfyUI would refuse is answered at once with ComfyUI's own node_errors instead of
failing minutes later. ComfyUI still checks it again when the job runs."""

from __future__ import annotations

import copy
import time
from typing import Any

from ..comfy.errors import PromptRejected
from ..comfy.object_info import ObjectInfoCache
from ..comfy.pool import BackendPool
from .placeholders import replace_random_ints
from .validate import Refusal, is_modern, validate_prompt

# Errors that a choice list fetched earlier may cause wrongly (a file uploaded since, a model
# copied in since): the node's class is fetched again before they are believed.
_CHOICE_ERRORS = {"value_not_in_list", "custom_validation_failed"}


class WorkflowChecker:
    def __init__(self, pool: BackendPool, cache: ObjectInfoCache, *, enabled: bool = True):
        self._pool, self._cache, self.enabled = pool, cache, enabled

    async def refusal(self, workflow: dict[str, Any]) -> Refusal | None:
        """None if some backend in rotation would accept the workflow (the router may send it
        to any), or when none can tell now; else the first backend's refusal."""
        if not self.enabled:
            return None
        asked = time.monotonic()
        first: Refusal | None = None
        for backend in [b for b in self._pool.backends if b.connected.is_set()]:
            catalog = await self._cache.catalog(backend)
            if catalog is None:
                continue
            modern = is_modern(catalog.version)
            refusal = validate_prompt(workflow, catalog.classes, modern=modern)
            if refusal is not None:
                stale = _classes_with_choice_errors(refusal)
                if stale:
                    if not await self._cache.refresh_classes(backend, catalog, stale, since=asked):
                        return None  # cannot tell whether the choice is there now: ComfyUI will
                    refusal = validate_prompt(workflow, catalog.classes, modern=modern)
            if refusal is None:
                return None
            first = first or refusal
        return first

    async def check(self, workflow: dict[str, Any], *, placeholders: bool = False) -> None:
        """Raise PromptRejected (ComfyUI's 400 body) if no backend would accept the workflow.
        `placeholders`: the workflow may still hold __RANDOM_INT__ (a client's, not yet built)."""
        refusal = await self.refusal(replace_random_ints(copy.deepcopy(workflow)) if placeholders else workflow)
        if refusal is not None:
            raise PromptRejected(refusal.body())


def _classes_with_choice_errors(refusal: Refusal) -> set[str]:
    return {entry["class_type"] for entry in refusal.node_errors.values()
            if any(e.get("type") in _CHOICE_ERRORS for e in entry.get("errors", []))}
