"""Which input files one backend already has. ComfyUI is remote (no shared filesystem), so an
input goes up with POST /upload/image to the backend that runs the job, once per content: the
file is named by its hash, and the name ComfyUI returns is the one the workflow uses."""

from __future__ import annotations

from collections import OrderedDict
from typing import Awaitable, Callable

from ..comfy.http import ComfyHTTP
from ..inputs.cache import Blob
from ..inputs.singleflight import SingleFlight

MAX_REMEMBERED = 65536


class BackendUploads:
    def __init__(self, http: ComfyHTTP):
        self._http = http
        self._names: OrderedDict[str, str] = OrderedDict()
        self._flights: SingleFlight[str] = SingleFlight()
        self.uploads = 0

    async def ensure(self, sha256: str, load: Callable[[], Awaitable[Blob]]) -> tuple[str, bool]:
        """(the name ComfyUI knows the file by, whether it was uploaded just now)."""
        name = self._names.get(sha256)
        if name is not None:
            self._names.move_to_end(sha256)
            return name, False
        return await self._flights.run(sha256, lambda: self._upload(sha256, load)), True

    async def _upload(self, sha256: str, load: Callable[[], Awaitable[Blob]]) -> str:
        blob = await load()
        # overwrite: the name is the content's hash, so a file already there is this file.
        answer = await self._http.upload_image(blob.filename, blob.data, content_type=blob.mime, overwrite=True)
        name = str(answer["name"])
        if answer.get("subfolder"):
            name = f"{answer['subfolder']}/{name}"
        self.uploads += 1
        self._names[sha256] = name
        while len(self._names) > MAX_REMEMBERED:
            self._names.popitem(last=False)
        return name

    def forget(self, sha256: str) -> None:
        """The backend no longer has it (its input folder was emptied, or it is a new one)."""
        self._names.pop(sha256, None)
