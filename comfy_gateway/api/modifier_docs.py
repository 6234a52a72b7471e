"""Every modifier's parameters as a typed schema in /docs: a component per modifier, named in
the description of `input.modifications`, and a worked request example for each."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from ..workflows.registry import ModifierRegistry

GENERATE_PATHS = ("/generate", "/generate/sync", "/generate/stream")


def install_modifier_docs(app: FastAPI, registry: ModifierRegistry) -> None:
    build_base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_base()  # FastAPI's own, cached on the app; completed once here
            _add_modifiers(schema, registry)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_modifiers(schema: dict[str, Any], registry: ModifierRegistry) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    refs = []
    for defn in registry:
        if defn.model is None:
            continue
        name = f"{defn.name}Modifications"
        component = defn.model.model_json_schema(ref_template="#/components/schemas/{model}")
        component["description"] = f"input.modifications for modifier '{defn.name}'. {defn.description}".strip()
        components[name] = component
        refs.append({"$ref": f"#/components/schemas/{name}"})
    generate_input = components.get("GenerateInput", {}).get("properties", {})
    if "modifications" in generate_input and refs:
        names = ", ".join(d.name for d in registry)
        generate_input["modifications"] = {
            "anyOf": [*refs, {"type": "object", "additionalProperties": True}],
            "title": "Modifications",
            "description": f"Parameters for the modifier named in 'modifier' ({names}); each one's schema "
                           "is below and at GET /modifiers.",
        }
    for path in GENERATE_PATHS:
        content = schema.get("paths", {}).get(path, {}).get("post", {}).get("requestBody", {}).get("content", {})
        examples = content.get("application/json", {}).setdefault("examples", {}) if content else None
        if examples is None:
            continue
        for defn in registry:
            examples[f"modifier_{defn.name}"] = {
                "summary": f"Modifier {defn.name} ({defn.kind})",
                "description": defn.description,
                "value": {"input": {"modifier": defn.name, "modifications": defn.example()}},
            }
