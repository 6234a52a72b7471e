"""A modifier's parameter table: each parameter's type, limits, default and the node inputs it
sets. Validates modifications (a 422 names the parameter) and gives the typed schema shown in
/docs and at GET /modifiers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

ParamType = Literal["integer", "number", "string", "boolean", "image"]
PYTHON_TYPES: dict[str, type] = {"integer": int, "number": float, "string": str, "boolean": bool, "image": str}
IMAGE_PATTERN = r"^(?i:https?://|data:|asset://)"
IMAGE_HELP = "an image: an http(s) URL, a data: URI, or an asset:// reference from POST /assets"


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node: str = Field(min_length=1)
    input: str = Field(min_length=1)


class ParamSpec(BaseModel):
    """One parameter. With no `default` it is required."""

    model_config = ConfigDict(extra="forbid")
    type: ParamType
    node: str | None = None
    input: str | None = None
    targets: list[Target] = Field(default_factory=list, description="several node inputs set to one value")
    default: Any = None
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = Field(None, ge=0)
    max_length: int | None = Field(None, ge=0)
    enum: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_way_to_target(self) -> "ParamSpec":
        if (self.node is None) != (self.input is None):
            raise ValueError("give both 'node' and 'input'")
        if self.node is not None:
            self.targets = [Target(node=self.node, input=self.input), *self.targets]  # type: ignore[arg-type]
        return self

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set or self.default is None

    def annotation_and_field(self) -> tuple[Any, Any]:
        kind = Literal[tuple(self.enum)] if self.enum else PYTHON_TYPES[self.type]  # type: ignore[misc]
        numeric = self.type in ("integer", "number")
        constraints: dict[str, Any] = {
            "ge": self.minimum if numeric else None, "le": self.maximum if numeric else None,
            "min_length": self.min_length, "max_length": self.max_length,
            "pattern": IMAGE_PATTERN if self.type == "image" else None,
        }
        description = self.description or (IMAGE_HELP if self.type == "image" else "")
        extra = {"x-sets": [f"{t.node}.{t.input}" for t in self.targets]} if self.targets else None
        field = Field(... if self.required else self.default, description=description or None,
                      json_schema_extra=extra, **{k: v for k, v in constraints.items() if v is not None})
        return kind, field


class InvalidModifications(ValueError):
    """The modifications do not fit the modifier's parameters; `errors` say which and why."""

    def __init__(self, modifier: str, errors: list[dict[str, Any]]):
        self.modifier, self.errors = modifier, errors
        summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
        super().__init__(f"modifier {modifier!r}: {summary}")


def parameters_model(name: str, specs: dict[str, ParamSpec]) -> type[BaseModel]:
    fields = {key: spec.annotation_and_field() for key, spec in specs.items()}
    return create_model(  # type: ignore[call-overload]
        f"{name}Modifications", __config__=ConfigDict(extra="forbid", validate_default=True), **fields)


def validate(name: str, model: type[BaseModel], modifications: dict[str, Any]) -> dict[str, Any]:
    """The modifications checked and converted, defaults filled in."""
    try:
        return model.model_validate(modifications).model_dump()
    except ValidationError as exc:
        raise InvalidModifications(name, [
            {"loc": ["modifications", *e.get("loc", ())], "msg": _message(e), "type": e.get("type", "")}
            for e in exc.errors(include_url=False)
        ]) from None


def _message(error: Any) -> str:
    if error.get("type") == "extra_forbidden":
        return "unknown parameter"
    if error.get("type") == "string_pattern_mismatch":  # only image parameters carry a pattern
        return "expected an image: an http(s) URL, a data: URI or an asset:// reference"
    return str(error.get("msg", "invalid"))


def parse_specs(raw: Any, what: str) -> dict[str, ParamSpec]:
    if not isinstance(raw, dict):
        raise ValueError(f"{what}: 'parameters' must be an object of parameter name -> spec")
    specs = {}
    for key, value in raw.items():
        try:
            specs[str(key)] = ParamSpec.model_validate(value)
        except ValidationError as exc:
            raise ValueError(f"{what}: parameter {key!r}: {exc.errors()[0]['msg']} "
                             f"at {'.'.join(str(p) for p in exc.errors()[0]['loc']) or 'its spec'}") from None
    return specs


def check_targets(specs: dict[str, ParamSpec], workflow: dict[str, Any], what: str, *,
                  require: bool = True) -> None:
    """Every parameter sets an input the workflow really has: a typo fails at start-up, not in
    a client's request. (A Python modifier's code may apply a parameter itself: require=False.)"""
    for key, spec in specs.items():
        if not spec.targets and require:
            raise ValueError(f"{what}: parameter {key!r} sets no node input (give 'node' and 'input')")
        for t in spec.targets:
            node = workflow.get(t.node)
            if not isinstance(node, dict):
                raise ValueError(f"{what}: parameter {key!r} sets node {t.node!r}, which the workflow does not have")
            if t.input not in (node.get("inputs") or {}):
                raise ValueError(f"{what}: parameter {key!r} sets input {t.input!r} of node {t.node!r} "
                                 f"({node.get('class_type')}), which that node does not have")


def check_defaults(specs: dict[str, ParamSpec], what: str) -> None:
    """A default outside its own limits is the operator's mistake: refuse it at start-up."""
    from typing import Annotated

    from pydantic import TypeAdapter

    for key, spec in specs.items():
        if spec.required:
            continue
        kind, field = spec.annotation_and_field()
        try:
            TypeAdapter(Annotated[kind, field]).validate_python(spec.default)
        except ValidationError as exc:
            raise ValueError(f"{what}: parameter {key!r}: its default {spec.default!r} does not fit: "
                             f"{exc.errors()[0]['msg']}") from None
