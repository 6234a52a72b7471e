"""The modifiers this gateway serves, by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from .discovery import discover
from .modifier import ModifierDef


class UnknownModifier(LookupError):
    def __init__(self, name: str, known: list[str]):
        self.name, self.known = name, known
        listed = ", ".join(known) if known else "none (MODIFIERS_DIR holds no modifier)"
        super().__init__(f"unknown modifier {name!r}; known modifiers: {listed}")


class ModifierRegistry:
    def __init__(self, defs: dict[str, ModifierDef], problems: list[str] | None = None):
        self._defs = defs
        self.problems = problems or []

    @classmethod
    def load(cls, modifiers_dir: Path, workflows_dir: Path) -> "ModifierRegistry":
        return cls(*discover(modifiers_dir, workflows_dir))

    def names(self) -> list[str]:
        return sorted(self._defs)

    def __iter__(self) -> Iterator[ModifierDef]:
        return iter(self._defs[name] for name in self.names())

    def get(self, name: str) -> ModifierDef:
        try:
            return self._defs[name]
        except KeyError:
            raise UnknownModifier(name, self.names()) from None

    def check(self, name: str, modifications: dict[str, Any]) -> dict[str, Any]:
        """Raises UnknownModifier or InvalidModifications; cheap, so the API asks before queuing."""
        return self.get(name).check(modifications)

    async def build(self, name: str, modifications: dict[str, Any]) -> dict[str, Any]:
        return await self.get(name).build(modifications)
