"""Where the fake keeps files and how it names them: input/ output/ temp/ under one base
directory, and folder_paths.get_save_image_path's ``<prefix>_00001_.png`` counters."""
from __future__ import annotations

import os
import time


class Dirs:
    """input/ output/ temp/ under one base directory, as ComfyUI's --base-directory."""

    def __init__(self, base_dir: str):
        self.base = os.path.abspath(base_dir)
        self.input = os.path.join(self.base, "input")
        self.output = os.path.join(self.base, "output")
        self.temp = os.path.join(self.base, "temp")
        for d in (self.input, self.output, self.temp):
            os.makedirs(d, exist_ok=True)

    def by_type(self, type_name: str | None) -> str | None:
        return {"output": self.output, "temp": self.temp, "input": self.input}.get(type_name or "")

    def annotated(self, name: str) -> tuple[str, str | None]:
        for tag, d in (("[output]", self.output), ("[input]", self.input), ("[temp]", self.temp)):
            if name.endswith(tag):
                return name[:-len(tag) - 1], d
        return name, None

    def annotated_path(self, name: str) -> str:
        name, base = self.annotated(name)
        return os.path.join(base or self.input, name)


class SaveCounters:
    """folder_paths.get_save_image_path, with the directory scan done once per prefix.

    ComfyUI rescans the folder on every save; the fake scans it the first time a
    (folder, prefix) is used and then counts in memory (O(1) per save, same names).
    """

    def __init__(self) -> None:
        self._next: dict[tuple[str, str], int] = {}

    def clear(self) -> None:
        self._next.clear()

    def save_path(self, prefix: str, output_dir: str, width: int = 0, height: int = 0):
        if "%" in prefix:
            now = time.localtime()
            for k, v in (("%width%", width), ("%height%", height), ("%year%", now.tm_year),
                         ("%month%", f"{now.tm_mon:02}"), ("%day%", f"{now.tm_mday:02}"),
                         ("%hour%", f"{now.tm_hour:02}"), ("%minute%", f"{now.tm_min:02}"),
                         ("%second%", f"{now.tm_sec:02}")):
                prefix = prefix.replace(k, str(v))
        subfolder = os.path.dirname(os.path.normpath(prefix))
        filename = os.path.basename(os.path.normpath(prefix))
        full = os.path.join(output_dir, subfolder)
        common = os.path.commonpath((output_dir, os.path.abspath(full)))
        if common != output_dir:
            raise Exception("**** ERROR: Saving image outside the output folder is not allowed."
                            f"\n full_output_folder: {os.path.abspath(full)}"
                            f"\n         output_dir: {output_dir}\n         commonpath: {common}")
        key = (os.path.abspath(full), os.path.normcase(filename))
        if key not in self._next:
            self._next[key] = self._scan(full, filename)
        os.makedirs(full, exist_ok=True)
        return full, filename, self._next[key], subfolder

    def advance(self, full: str, filename: str, counter: int) -> None:
        self._next[(os.path.abspath(full), os.path.normcase(filename))] = counter

    @staticmethod
    def _scan(full: str, filename: str) -> int:
        plen = len(filename)
        best = 0
        try:
            names = os.listdir(full)
        except FileNotFoundError:
            return 1
        for name in names:
            head = name[:plen + 1]
            if os.path.normcase(head[:-1]) != os.path.normcase(filename) or head[-1:] != "_":
                continue
            try:
                best = max(best, int(name[plen + 1:].split("_")[0]))
            except ValueError:
                pass
        return best + 1
