"""The text nodes of the recordings' runtime-error scenario (40_runtime_errors.json,
regex_error): comfy_extras.nodes_primitive's PrimitiveString, nodes_string's RegexExtract (a bad
pattern gives "" rather than an error) and nodes_preview_any's PreviewAny (an output node
showing its input as text)."""
from __future__ import annotations

import json
import re

from comfy_gateway.testing.fake.nodes.base import Node, int_input


class PrimitiveString(Node):
    NAME, CATEGORY, MODULE, V3 = "PrimitiveString", "utils/primitive", "comfy_extras.nodes_primitive", True
    RETURN_TYPES = ("STRING",)
    INPUTS = {"required": {"value": ("STRING", {})}}

    def run(self, ctx, value):
        return (value,), None


class RegexExtract(Node):
    NAME, CATEGORY, MODULE, V3 = "RegexExtract", "utils/string", "comfy_extras.nodes_string", True
    RETURN_TYPES = ("STRING",)
    MODES = ["First Match", "All Matches", "First Group", "All Groups"]
    INPUTS = {"required": {"string": ("STRING", {"multiline": True}),
                           "regex_pattern": ("STRING", {"multiline": True}),
                           "mode": (MODES,),
                           "case_insensitive": ("BOOLEAN", {"default": True}),
                           "multiline": ("BOOLEAN", {"default": False}),
                           "dotall": ("BOOLEAN", {"default": False}),
                           "group_index": int_input(1, 0, 100, 1)}}

    def run(self, ctx, string, regex_pattern, mode, case_insensitive=True, multiline=False, dotall=False,
            group_index=1):
        flags = (re.IGNORECASE if case_insensitive else 0) | (re.MULTILINE if multiline else 0) \
            | (re.DOTALL if dotall else 0)
        try:
            if mode == "First Match":
                m = re.search(regex_pattern, string, flags)
                result = m.group(0) if m else ""
            elif mode == "All Matches":
                result = "\n".join(m.group(0) for m in re.finditer(regex_pattern, string, flags))
            elif mode == "First Group":
                m = re.search(regex_pattern, string, flags)
                result = m.group(group_index) if m and len(m.groups()) >= group_index else ""
            else:
                result = "\n".join(m.group(group_index) for m in re.finditer(regex_pattern, string, flags)
                                   if len(m.groups()) >= group_index)
        except re.error:
            result = ""
        return (result,), None


class PreviewAny(Node):
    NAME, DISPLAY_NAME, CATEGORY = "PreviewAny", "Preview Any", "utils"
    MODULE, OUTPUT_NODE, RETURN_TYPES = "comfy_extras.nodes_preview_any", True, ()
    INPUTS = {"required": {"source": ("*", {})}}

    def run(self, ctx, source=None):
        if isinstance(source, str):
            value = source
        elif isinstance(source, (int, float, bool)):
            value = str(source)
        elif source is None:
            value = "None"
        else:
            try:
                value = json.dumps(source)
            except Exception:  # noqa: BLE001 - as PreviewAny: anything shows as its str()
                value = str(source)
        return (), {"text": [value]}
