"""Finding modifiers at start-up: Python classes deriving from BaseModifier in MODIFIERS_DIR/*.py,
and declarative mapping files MODIFIERS_DIR/*.json, each bound to a workflow in WORKFLOWS_DIR.

A modifier that cannot be loaded is logged and left out; the service starts with the others.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import basemodifier
from .basemodifier import BaseModifier
from .modifier import ModifierDef
from .params import check_defaults, check_targets, parameters_model, parse_specs

log = logging.getLogger(__name__)
PACKAGE = "modifiers"  # the name user code imports: `from modifiers.basemodifier import BaseModifier`


class MappingFile(BaseModel):
    """A declarative modifier: a workflow and the parameters that set its inputs."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
    description: str = ""
    workflow: str = Field(min_length=1)
    parameters: dict[str, Any]


def discover(modifiers_dir: Path, workflows_dir: Path) -> tuple[dict[str, ModifierDef], list[str]]:
    """{name: modifier} and a list of what could not be loaded (also logged)."""
    found: dict[str, ModifierDef] = {}
    problems: list[str] = []
    if not modifiers_dir.is_dir():
        log.info("MODIFIERS_DIR %s does not exist: no modifiers", modifiers_dir)
        return found, problems
    install_package(modifiers_dir)

    def add(defn: ModifierDef) -> None:
        if defn.name in found:
            problems.append(f"{defn.source.name}: modifier {defn.name!r} is already defined in "
                            f"{found[defn.name].source.name}; this one is ignored")
            return
        found[defn.name] = defn

    for path in sorted(modifiers_dir.glob("*.py")):
        if path.stem in ("__init__", "basemodifier"):  # our base replaces any copy of the original's
            continue
        try:
            for defn in _python_modifiers(path, workflows_dir):
                add(defn)
        except Exception as exc:  # noqa: BLE001 - user code: report it, keep serving the rest
            problems.append(f"{path.name}: {type(exc).__name__}: {exc}")
    for path in sorted(modifiers_dir.glob("*.json")):
        try:
            add(_declarative_modifier(path, workflows_dir))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{path.name}: {exc}")
    for problem in problems:
        log.error("modifier not loaded: %s", problem)
    log.info("modifiers: %s", ", ".join(sorted(found)) or "none")
    return found, problems


def install_package(modifiers_dir: Path) -> None:
    """Make `modifiers` the package of MODIFIERS_DIR and `modifiers.basemodifier` our base, so
    modifiers written for the original import unchanged, wherever the folder lies."""
    package = types.ModuleType(PACKAGE, "modifier classes from MODIFIERS_DIR")
    package.__path__ = [str(modifiers_dir.resolve())]
    package.__package__ = PACKAGE
    package.basemodifier = basemodifier  # type: ignore[attr-defined]
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]  # a re-discovery starts clean
    sys.modules[PACKAGE] = package
    sys.modules[f"{PACKAGE}.basemodifier"] = basemodifier


def _python_modifiers(path: Path, workflows_dir: Path) -> list[ModifierDef]:
    module_name = f"{PACKAGE}.{path.stem}"
    module = sys.modules.get(module_name)  # already imported by a sibling module
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    defs = []
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if not issubclass(cls, BaseModifier) or cls is BaseModifier or cls.__module__ != module_name:
            continue
        if not cls.WORKFLOW_JSON:
            log.info("%s.%s has no WORKFLOW_JSON: not a modifier (send raw workflows as workflow_json)",
                     path.name, cls.__name__)
            continue
        workflow_file = resolve_workflow(cls.WORKFLOW_JSON, workflows_dir)
        template = load_workflow_file(workflow_file)
        what = f"{path.name}: {cls.__name__}"
        params = model = None
        if cls.PARAMETERS is not None:
            params = parse_specs(cls.PARAMETERS, what)
            check_targets(params, template, what, require=False)
            check_defaults(params, what)
            model = parameters_model(cls.__name__, params)
        cls._gateway_template = template  # type: ignore[attr-defined]  # parsed once, copied per job
        doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
        defs.append(ModifierDef(name=cls.__name__, kind="python", description=doc, source=path,
                                workflow_file=workflow_file, template=template, params=params,
                                model=model, cls=cls))
    return defs


def _declarative_modifier(path: Path, workflows_dir: Path) -> ModifierDef:
    try:
        mapping = MappingFile.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"not a modifier mapping: {'.'.join(str(p) for p in first['loc']) or 'file'}: "
                         f"{first['msg']}") from None
    name = mapping.name or path.stem
    workflow_file = resolve_workflow(mapping.workflow, workflows_dir)
    template = load_workflow_file(workflow_file)
    params = parse_specs(mapping.parameters, path.name)
    check_targets(params, template, path.name)
    check_defaults(params, path.name)
    return ModifierDef(name=name, kind="declarative", description=mapping.description, source=path,
                       workflow_file=workflow_file, template=template, params=params,
                       model=parameters_model(name, params))


def resolve_workflow(value: str, workflows_dir: Path) -> Path:
    """A workflow path as modifiers give it. Relative paths are looked up in WORKFLOWS_DIR; the
    original's `workflows/x.json` means WORKFLOWS_DIR/x.json wherever that folder is."""
    path = Path(value)
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [workflows_dir / path]
        if len(path.parts) > 1 and path.parts[0] == "workflows":
            candidates.append(workflows_dir.joinpath(*path.parts[1:]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"workflow {value!r} not found (looked for {', '.join(str(c) for c in candidates)})")


def load_workflow_file(path: Path) -> dict[str, Any]:
    try:
        workflow = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"workflow {path.name}: cannot be read as JSON: {exc}") from None
    if not isinstance(workflow, dict) or not workflow or not all(
            isinstance(n, dict) and isinstance(n.get("class_type"), str) for n in workflow.values()):
        raise ValueError(f"workflow {path.name}: not an API-format workflow (ComfyUI's 'Export (API)'): "
                         "expected an object of nodes, each with a class_type")
    return workflow
