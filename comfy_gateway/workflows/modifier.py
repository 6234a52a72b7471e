"""One modifier, however it was written (a Python class or a mapping file): what it is called,
its workflow, its parameters, and how it turns modifications into a workflow."""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from .basemodifier import BaseModifier, MissingModification
from .params import ParamSpec, validate

MAX_NODES = 5000


class ModifierError(Exception):
    """A modifier could not build a workflow from the request; fails that job only."""

    type = "modifier_error"

    def __init__(self, modifier: str, message: str, details: dict[str, Any] | None = None):
        self.modifier, self.details = modifier, details or {}
        super().__init__(message)


class MissingModificationError(ModifierError):
    type = "missing_modification"


@dataclass
class ModifierDef:
    name: str
    kind: Literal["python", "declarative"]
    description: str
    source: Path
    workflow_file: Path
    template: dict[str, Any]
    params: dict[str, ParamSpec] | None = None
    model: type[BaseModel] | None = None
    cls: type[BaseModifier] | None = None

    def check(self, modifications: dict[str, Any]) -> dict[str, Any]:
        """Validated and completed modifications (InvalidModifications when they do not fit);
        a Python modifier without PARAMETERS takes them as they come, as the original did."""
        if self.model is None:
            return dict(modifications)
        return validate(self.name, self.model, modifications)

    async def build(self, modifications: dict[str, Any]) -> dict[str, Any]:
        values = self.check(modifications)
        try:
            workflow = await (self._run_class(values) if self.cls else self._apply_mapping(values))
        except MissingModification as exc:
            raise MissingModificationError(
                self.name, f"modifier {self.name!r}: modifications.{exc.key} is required",
                {"modifier": self.name, "missing": exc.key}) from None
        except ModifierError:
            raise
        except Exception as exc:  # noqa: BLE001 - the modifier's own code: fail this job, say why
            raise ModifierError(self.name, f"modifier {self.name!r} failed: {type(exc).__name__}: {exc}",
                                {"modifier": self.name, "exception_type": type(exc).__name__}) from exc
        return self._checked(workflow)

    async def _run_class(self, values: dict[str, Any]) -> Any:
        assert self.cls is not None
        try:
            inspect.signature(self.cls).bind(values)
            takes_modifications = True
        except TypeError:
            takes_modifications = False
        if takes_modifications:
            instance = self.cls(values)
        else:  # an __init__ without the argument: hand them over as the original's examples do
            instance = self.cls()
            instance.modifications = values
        await instance.load_workflow()
        self._set_targets(instance.workflow, values)  # PARAMETERS with node/input: set for the class
        return await instance.get_modified_workflow()

    async def _apply_mapping(self, values: dict[str, Any]) -> dict[str, Any]:
        workflow = copy.deepcopy(self.template)
        self._set_targets(workflow, values)
        return workflow

    def _set_targets(self, workflow: dict[str, Any], values: dict[str, Any]) -> None:
        for key, spec in (self.params or {}).items():
            for t in spec.targets:
                workflow[t.node]["inputs"][t.input] = values[key]

    def _checked(self, workflow: Any) -> dict[str, Any]:
        def bad(why: str) -> ModifierError:
            return ModifierError(self.name, f"modifier {self.name!r} built no valid workflow: {why}",
                                 {"modifier": self.name})

        if not isinstance(workflow, dict) or not workflow:
            raise bad("it is not an object of nodes")
        if len(workflow) > MAX_NODES:
            raise bad(f"more than {MAX_NODES} nodes")
        for node_id, node in workflow.items():
            if not isinstance(node, dict) or not isinstance(node.get("class_type"), str) \
                    or not isinstance(node.get("inputs", {}), dict):
                raise bad(f"node {node_id!r} has no class_type or its inputs are not an object")
        return workflow

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "description": self.description,
            "workflow": self.workflow_file.name,
            "parameters": self.model.model_json_schema() if self.model else None,
            "example": {"input": {"modifier": self.name, "modifications": self.example()}},
        }

    def example(self) -> dict[str, Any]:
        """Modifications a client could send: every required parameter, with a sample value."""
        samples = {"integer": 1, "number": 1.0, "string": "text", "boolean": True,
                   "image": "https://example.com/photo.png"}
        out: dict[str, Any] = {}
        for key, spec in (self.params or {}).items():
            if spec.required:
                out[key] = spec.enum[0] if spec.enum else samples[spec.type]
        return out
