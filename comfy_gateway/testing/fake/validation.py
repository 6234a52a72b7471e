"""POST /prompt validation, ported from ComfyUI 0.3.75's execution.validate_prompt and
validate_inputs: which prompts are refused and the exact 400 bodies (error and node_errors)."""
from __future__ import annotations

import traceback
from typing import Any

from comfy_gateway.testing.fake.nodes import Node, full_type_name, input_info, is_link


def _types_match(received: Any, wanted: Any) -> bool:
    if received == "*" or wanted == "*" or received == wanted:
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in wanted.split(",")})


def _err(type_, message, details, extra):
    return {"type": type_, "message": message, "details": details, "extra_info": extra}


def _validate_inputs(nodes, prompt, uid, validated):
    if uid in validated:
        return validated[uid]
    inputs = prompt[uid]["inputs"]
    node = nodes[prompt[uid]["class_type"]]
    class_inputs = node.input_types()
    names = list(dict.fromkeys([*class_inputs.get("required", {}), *class_inputs.get("optional", {})]))
    errors, valid = [], True
    for x in names:
        input_type, category, extra = input_info(class_inputs, x)
        if x not in inputs:
            if category == "required":
                errors.append(_err("required_input_missing", "Required input is missing", f"{x}",
                                   {"input_name": x}))
            continue
        val, info = inputs[x], (input_type, extra)
        if isinstance(val, list):
            if len(val) != 2:
                errors.append(_err("bad_linked_input",
                                   "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                                   f"{x}", {"input_name": x, "input_config": info, "received_value": val}))
                continue
            o_id = val[0]
            received = nodes[prompt[o_id]["class_type"]].RETURN_TYPES[val[1]]
            if not _types_match(received, input_type):
                errors.append(_err("return_type_mismatch", "Return type mismatch between linked nodes",
                                   f"{x}, received_type({received}) mismatch input_type({input_type})",
                                   {"input_name": x, "input_config": info, "received_type": received,
                                    "linked_node": val}))
                continue
            try:
                if _validate_inputs(nodes, prompt, o_id, validated)[0] is False:
                    valid = False
            except Exception as ex:
                valid = False
                validated[o_id] = (False, [_err(
                    "exception_during_inner_validation", "Exception when validating inner node", str(ex),
                    {"input_name": x, "input_config": info, "exception_message": str(ex),
                     "exception_type": full_type_name(type(ex)),
                     "traceback": _format_tb(ex), "linked_node": val})], o_id)
            continue
        try:
            if isinstance(val, dict) and "__value__" in val:
                val = inputs[x] = val["__value__"]
            conv = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(
                input_type if isinstance(input_type, str) else "")
            if conv is not None:
                val = inputs[x] = conv(val)
        except Exception as ex:
            errors.append(_err("invalid_input_type", f"Failed to convert an input value to a {input_type} value",
                               f"{x}, {val}, {ex}", {"input_name": x, "input_config": info,
                                                     "received_value": val, "exception_message": str(ex)}))
            continue
        if x in node.VALIDATE_ARGS:
            continue
        if "min" in extra and val < extra["min"]:
            errors.append(_err("value_smaller_than_min", "Value {} smaller than min of {}".format(val, extra["min"]),
                               f"{x}", {"input_name": x, "input_config": info, "received_value": val}))
            continue
        if "max" in extra and val > extra["max"]:
            errors.append(_err("value_bigger_than_max", "Value {} bigger than max of {}".format(val, extra["max"]),
                               f"{x}", {"input_name": x, "input_config": info, "received_value": val}))
            continue
        if isinstance(input_type, list) and val not in input_type:
            big = len(input_type) > 20
            errors.append(_err("value_not_in_list", "Value not in list",
                               f"{x}: '{val}' not in {f'(list of length {len(input_type)})' if big else input_type}",
                               {"input_name": x, "input_config": None if big else info, "received_value": val}))
    if node.VALIDATE_ARGS:
        args = {x: (None if is_link(inputs[x]) else inputs[x]) for x in inputs if x in node.VALIDATE_ARGS}
        r = node.VALIDATE_INPUTS(**args)
        if r is not True:
            for x in args:
                errors.append(_err("custom_validation_failed", "Custom validation failed for node",
                                   f"{x}" + ("" if r is False else f" - {r}"), {"input_name": x}))
    ret = (False, errors, uid) if errors or valid is not True else (True, [], uid)
    validated[uid] = ret
    return ret


def _format_tb(ex: BaseException) -> list[str]:
    return traceback.format_tb(ex.__traceback__)


def validate_prompt(nodes: dict[str, Node], prompt: dict, partial: list | None = None):
    """execution.validate_prompt: (ok, error, outputs_to_execute, node_errors)."""
    outputs = []
    for x in prompt:
        if "class_type" not in prompt[x]:
            return False, _err("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                               f"Node ID '#{x}'", {}), [], {}
        class_type = prompt[x]["class_type"]
        node = nodes.get(class_type)
        if node is None:
            return False, _err("invalid_prompt", f"Cannot execute because node {class_type} does not exist.",
                               f"Node ID '#{x}'", {}), [], {}
        if node.OUTPUT_NODE and (partial is None or x in partial):
            outputs.append(x)
    if not outputs:
        return False, _err("prompt_no_outputs", "Prompt has no outputs", "", {}), [], {}
    good, failed, node_errors, validated = [], [], {}, {}
    for o in outputs:
        try:
            valid, reasons, _ = _validate_inputs(nodes, prompt, o, validated)
        except Exception as ex:
            valid = False
            reasons = [_err("exception_during_validation", "Exception when validating node", str(ex),
                            {"exception_type": full_type_name(type(ex)), "traceback": _format_tb(ex)})]
            validated[o] = (False, reasons, o)
        if valid is True:
            good.append(o)
            continue
        failed.append((o, reasons))
        for node_id, (ok, node_reasons, _) in validated.items():
            if ok is not True and node_reasons:
                if node_id not in node_errors:
                    node_errors[node_id] = {"errors": node_reasons, "dependent_outputs": [],
                                            "class_type": prompt[node_id]["class_type"]}
                node_errors[node_id]["dependent_outputs"].append(o)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failed for e in errs)
        return False, _err("prompt_outputs_failed_validation", "Prompt outputs failed validation", details, {}), \
            [], node_errors
    return True, None, good, node_errors
