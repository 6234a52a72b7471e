"""Lets editors and `python -c` resolve `from modifiers.basemodifier import BaseModifier` from the
repository root. The gateway itself maps that import to its own class, whatever MODIFIERS_DIR is,
and never loads this file as a modifier."""

from comfy_gateway.workflows.basemodifier import BaseModifier, MissingModification  # noqa: F401
