"""The workflow a request asks for, before its inputs are fetched: the client's own
(workflow_json) or the one a modifier builds, with `__RANDOM_INT__` placeholders filled."""

from __future__ import annotations

import copy
from typing import Any

from .placeholders import replace_random_ints
from .registry import ModifierRegistry


async def build_workflow(request: dict[str, Any], registry: ModifierRegistry) -> tuple[dict[str, Any], dict[str, str]]:
    """(workflow, names): names maps each string a client sent in `modifications` to its key,
    so an input refused later is named the way the client knows it."""
    if request.get("modifier"):
        # A copy: values a modifier puts into the workflow are changed in place later, and the
        # request as the client sent it must stay as it was (idempotent re-sends compare it).
        modifications = copy.deepcopy(request.get("modifications") or {})
        workflow = await registry.build(request["modifier"], modifications)
        names = {v: k for k, v in modifications.items() if isinstance(v, str)}
    else:
        workflow = copy.deepcopy(request["workflow_json"])
        names = {}
    return replace_random_ints(workflow), names
