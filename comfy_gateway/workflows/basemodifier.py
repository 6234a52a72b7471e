"""The class modifiers derive from. User code imports it as the original did:

    from modifiers.basemodifier import BaseModifier

(the gateway makes `modifiers.basemodifier` this module, whatever folder MODIFIERS_DIR is).
A modifier is bound to a workflow file (WORKFLOW_JSON), reads the client's `modifications`
with `modify_workflow_value(key, default)`, and changes `self.workflow` in
`apply_modifications`. Input URLs and `__RANDOM_INT__` placeholders are handled by the
gateway for every workflow after the modifier ran, so the modifier never fetches anything.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from .placeholders import replace_random_ints as _replace_random_ints


class MissingModification(IndexError):
    """A value the modifier requires (no default) is not in `modifications`. An IndexError,
    as the original raised, so modifiers that catch that keep working."""

    def __init__(self, key: str):
        self.key = key
        super().__init__(f"{key} required but not set")


class BaseModifier:
    WORKFLOW_JSON = ""
    # Optional: the same parameter table a declarative mapping file has. When a class sets it,
    # modifications are validated against it (unknown or out-of-range: a 422 naming the
    # parameter), defaults are filled in, and /docs and GET /modifiers show it as a schema.
    PARAMETERS: dict[str, dict[str, Any]] | None = None

    def __init__(self, modifications: dict[str, Any] | None = None):
        self.modifications: dict[str, Any] = modifications if modifications is not None else {}
        self.workflow: dict[str, Any] = {}

    async def load_workflow(self, workflow: dict[str, Any] | None = None) -> None:
        if workflow and not self.WORKFLOW_JSON:
            self.workflow = workflow
            return
        # The registry parsed the file once at start-up; each job works on its own copy.
        template = type(self).__dict__.get("_gateway_template")
        if template is None:
            template = json.loads(Path(self.WORKFLOW_JSON).read_text(encoding="utf-8"))
        self.workflow = copy.deepcopy(template)

    async def modify_workflow_value(self, key: str, default: Any = None) -> Any:
        """The client's value for key, else the default; with no default the key is required."""
        if key in self.modifications:
            return self.modifications[key]
        if default is None:
            raise MissingModification(key)
        return default

    def replace_random_ints(self, data: Any) -> Any:
        return _replace_random_ints(data)

    async def apply_modifications(self) -> None:
        """Subclasses set values here and may call super() last, as with the original (whose
        base downloaded URLs here: the gateway now does that for every workflow)."""

    async def get_modified_workflow(self) -> dict[str, Any]:
        await self.apply_modifications()
        return self.workflow
