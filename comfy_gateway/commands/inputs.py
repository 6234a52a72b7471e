"""Reading what the user gives the `run` command: the workflow file and --set key=value."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


class UsageError(Exception):
    """Something on the command line or in an input file is wrong; exit code 2."""


def load_workflow(path: str) -> dict[str, Any]:
    """The request fields a workflow file stands for. Takes an API-format workflow (ComfyUI's
    Export (API)), a whole request body {"input": {...}}, or a /prompt body {"prompt": {...}};
    '-' reads standard input."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the workflow {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"the workflow {path} is not a UTF-8 text file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"the workflow {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno}") from None
    if not isinstance(data, dict) or not data:
        raise UsageError(f"the workflow {path} must be a JSON object of nodes")
    if isinstance(data.get("input"), dict):
        return dict(data["input"])
    if isinstance(data.get("prompt"), dict):
        return {"workflow_json": data["prompt"]}
    if isinstance(data.get("nodes"), list) and "links" in data:
        raise UsageError(f"{path} is in ComfyUI's UI format; save it with 'Export (API)' and use that file")
    return {"workflow_json": data}


def parse_sets(items: list[str]) -> dict[str, Any]:
    """--set key=value, repeated. A value that parses as JSON is taken as such (numbers,
    true/false, null, lists, objects, quoted strings); anything else is a plain string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set takes key=value (got {item!r})")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out
