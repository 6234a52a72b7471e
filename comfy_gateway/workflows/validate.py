"""ComfyUI's own checks of an API-format prompt (execution.validate_prompt and validate_inputs),
run against a backend's /object_info instead of its Python classes, answering with the same
`error` and `node_errors` ComfyUI's POST /prompt would send.

What /object_info cannot tell is left to ComfyUI, which stays the final judge when the job runs:
a node's own VALIDATE_INPUTS (only the file check of image-upload inputs is reproduced, as
LoadImage does it), values the gateway replaces before the job runs (URLs, data: URIs,
asset:// references: see inputs/find.py), and choice lists that are empty because a models
folder is (the model may be delivered later).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..inputs.find import classify

Catalog = dict[str, dict[str, Any]]  # class_type -> its /object_info entry
NodeErrors = dict[str, dict[str, Any]]
_CONVERT = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
_FILE_SUFFIXES = (" [input]", " [output]", " [temp]")


@dataclass(frozen=True)
class Refusal:
    """What ComfyUI's POST /prompt answers with a 400: {error, node_errors}."""

    error: dict[str, Any]
    node_errors: NodeErrors

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "node_errors": self.node_errors}


def _err(type_: str, message: str, details: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"type": type_, "message": message, "details": details, "extra_info": extra}


def validate_prompt(prompt: dict[str, Any], catalog: Catalog, *, modern: bool = False) -> Refusal | None:
    """None when ComfyUI would accept the prompt, else its refusal. `modern`: answer as
    ComfyUI 0.4 and later do (missing_node_type for unknown or missing class types)."""
    outputs: list[str] = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            if modern:
                return Refusal(_err("missing_node_type", f"Node 'ID #{node_id}' has no class_type. The workflow "
                                    "may be corrupted or a custom node is missing.", f"Node ID '#{node_id}'",
                                    {"node_id": node_id, "class_type": None, "node_title": None}), {})
            return Refusal(_err("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                                f"Node ID '#{node_id}'", {}), {})
        class_type = node["class_type"]
        info = catalog.get(class_type) if isinstance(class_type, str) else None
        if info is None:
            if modern:
                title = (node.get("_meta") or {}).get("title", class_type) if isinstance(node.get("_meta"), dict) \
                    else class_type
                return Refusal(_err("missing_node_type", f"Node '{class_type}' not found. The custom node may not "
                                    "be installed.", f"Node ID '#{node_id}'",
                                    {"node_id": node_id, "class_type": class_type, "node_title": title}), {})
            return Refusal(_err("invalid_prompt", f"Cannot execute because node {class_type} does not exist.",
                                f"Node ID '#{node_id}'", {}), {})
        if info.get("output_node") is True:
            outputs.append(node_id)
    if not outputs:
        return Refusal(_err("prompt_no_outputs", "Prompt has no outputs", "", {}), {})

    checker = _Inputs(prompt, catalog, modern)
    good, failed, node_errors = [], [], {}
    for out in outputs:
        try:
            valid, reasons = checker.node(out)
        except RecursionError:
            return None  # deeper than this check goes: ComfyUI will judge it
        except Exception as ex:  # noqa: BLE001 - ComfyUI turns these into a node error too
            valid, reasons = False, [_exception("exception_during_validation", "Exception when validating node", ex)]
            checker.validated[out] = (False, reasons)
        if valid:
            good.append(out)
            continue
        failed.append(reasons)
        for node_id, (ok, node_reasons) in checker.validated.items():
            # A node downstream of a broken one is invalid without errors of its own: not listed.
            if not ok and node_reasons:
                entry = node_errors.setdefault(node_id, {"errors": node_reasons, "dependent_outputs": [],
                                                         "class_type": prompt[node_id]["class_type"]})
                entry["dependent_outputs"].append(out)
    if good:
        return None
    details = "\n".join(f"{e['message']}: {e['details']}" for reasons in failed for e in reasons)
    return Refusal(_err("prompt_outputs_failed_validation", "Prompt outputs failed validation", details, {}),
                   node_errors)


def _exception(type_: str, message: str, ex: Exception, **extra: Any) -> dict[str, Any]:
    name = type(ex).__qualname__ if type(ex).__module__ == "builtins" else f"{type(ex).__module__}.{type(ex).__qualname__}"
    # No traceback: it would show the gateway's code, not ComfyUI's.
    return _err(type_, message, str(ex), {**extra, "exception_type": name, "traceback": []})


def _types_match(received: Any, wanted: Any) -> bool:
    """comfy_execution.validation.validate_node_input (non-strict), with '*' matching anything."""
    if received == wanted:
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in wanted.split(",")}
    return "*" in got or "*" in want or bool(got & want)


def _replaced_later(value: Any) -> bool:
    """A URL, data: URI or asset:// reference: the gateway puts an uploaded file's name there
    before ComfyUI sees it, so its value now says nothing about what ComfyUI will get."""
    return isinstance(value, str) and classify(value) is not None


class _Inputs:
    def __init__(self, prompt: dict[str, Any], catalog: Catalog, modern: bool):
        self.prompt, self.catalog, self.modern = prompt, catalog, modern
        self.validated: dict[str, tuple[bool, list[dict[str, Any]]]] = {}

    def node(self, uid: str) -> tuple[bool, list[dict[str, Any]]]:
        if uid in self.validated:
            return self.validated[uid]
        node = self.prompt[uid]
        inputs = node.get("inputs") or {}
        spec = self.catalog[node["class_type"]].get("input") or {}
        required, optional = spec.get("required") or {}, spec.get("optional") or {}
        errors: list[dict[str, Any]] = []
        valid = True
        for name in dict.fromkeys([*required, *optional]):
            config = required[name] if name in required else optional[name]
            input_type = config[0] if isinstance(config, list) and config else config
            extra = config[1] if isinstance(config, list) and len(config) > 1 and isinstance(config[1], dict) else {}
            info = [input_type, extra]
            if name not in inputs:
                if name in required:
                    errors.append(_err("required_input_missing", "Required input is missing", name,
                                       {"input_name": name}))
                continue
            value = inputs[name]
            if isinstance(value, list):
                ok = self._link(name, value, input_type, info, errors)
                valid = valid and ok
                continue
            error = self._value(name, value, input_type, extra, info)
            if error is not None:
                errors.append(error)
        result = (not errors and valid, errors)
        self.validated[uid] = result
        return result

    def _link(self, name: str, link: list[Any], input_type: Any, info: list[Any], errors: list[dict[str, Any]]) -> bool:
        if len(link) != 2:
            errors.append(_err("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                               name, {"input_name": name, "input_config": info, "received_value": link}))
            return True
        source = link[0]
        returns = self.catalog[self.prompt[source]["class_type"]].get("output") or []
        received = returns[link[1]]
        if not _types_match(received, input_type):
            errors.append(_err("return_type_mismatch", "Return type mismatch between linked nodes",
                               f"{name}, received_type({received}) mismatch input_type({input_type})",
                               {"input_name": name, "input_config": info, "received_type": received,
                                "linked_node": link}))
            return True
        try:
            return self.node(source)[0]
        except RecursionError:
            raise
        except Exception as ex:  # noqa: BLE001
            self.validated[source] = (False, [_exception(
                "exception_during_inner_validation", "Exception when validating inner node", ex, input_name=name,
                input_config=info, exception_message=str(ex), linked_node=link)])
            return False

    def _value(self, name: str, value: Any, input_type: Any, extra: dict[str, Any],
               info: list[Any]) -> dict[str, Any] | None:
        if isinstance(value, dict) and "__value__" in value:
            value = value["__value__"]
        if _replaced_later(value):
            return None
        convert = _CONVERT.get(input_type) if isinstance(input_type, str) else None
        if convert is not None:
            try:
                value = convert(value)
            except Exception as ex:  # noqa: BLE001 - exactly what ComfyUI's int()/float() raise
                return _err("invalid_input_type", f"Failed to convert an input value to a {input_type} value",
                            f"{name}, {value}, {ex}", {"input_name": name, "input_config": info,
                                                        "received_value": value, "exception_message": str(ex)})
        if any(key.endswith("upload") for key in extra):
            return self._upload(name, value, input_type, extra)
        if "min" in extra and value < extra["min"]:
            return _err("value_smaller_than_min", f"Value {value} smaller than min of {extra['min']}", name,
                        {"input_name": name, "input_config": info, "received_value": value})
        if "max" in extra and value > extra["max"]:
            return _err("value_bigger_than_max", f"Value {value} bigger than max of {extra['max']}", name,
                        {"input_name": name, "input_config": info, "received_value": value})
        choices = input_type if isinstance(input_type, list) else (
            extra.get("options") if self.modern and input_type == "COMBO" else None)
        # An empty list is a models folder with nothing in it yet, not a list that allows nothing.
        if choices and value not in choices:
            big = len(choices) > 20
            listed = f"(list of length {len(choices)})" if big else str(choices)
            return _err("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {listed}",
                        {"input_name": name, "input_config": None if big else info, "received_value": value})
        return None

    @staticmethod
    def _upload(name: str, value: Any, input_type: Any, extra: dict[str, Any]) -> dict[str, Any] | None:
        """Inputs with an upload button are files a node checks itself (VALIDATE_INPUTS). Only
        LoadImage's check is known: the file must exist in the input folder, which the choice
        list shows for plain names; annotated names and subfolders are left to ComfyUI."""
        if not extra.get("image_upload") or not isinstance(input_type, list) or not isinstance(value, str):
            return None
        if value in input_type or "/" in value or "\\" in value or value.endswith(_FILE_SUFFIXES):
            return None
        return _err("custom_validation_failed", "Custom validation failed for node",
                    f"{name} - Invalid image file: {value}", {"input_name": name})


def is_modern(version: str | None) -> bool:
    """ComfyUI 0.4 and later (0.33.0 here) name unknown node types differently."""
    try:
        major, minor = (int(p) for p in (version or "").split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (0, 4)
