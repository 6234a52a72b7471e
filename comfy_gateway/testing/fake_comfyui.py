"""A protocol-faithful fake ComfyUI 0.3.75 server (aiohttp), for tests and benchmarks.

It answers like the transcripts in shared/comfyui-protocol/ (and like ComfyUI's own
server.py / execution.py / main.py, which it ports): same routes with and without the
``/api`` prefix, same JSON shapes and key order, same websocket frame order and
visibility, same history entries, same 400/500 bodies. Fake-only nodes (FakeSlow,
FakeFail, FakeBigOutput) and knobs make it do what a real ComfyUI cannot on demand.

In-process::

    fake = FakeComfyUI(tmp_path, node_delay=0.1)
    await fake.start("127.0.0.1", 0)      # fake.url == "http://127.0.0.1:<port>"
    fake.set(fail_next=1)                 # or POST {url}/fake/control {"fail_next": 1}
    await fake.stop()

Command line: ``python -m comfy_gateway.testing.fake_comfyui --port 8188 --base-dir DIR``
prints ``ready http://HOST:PORT`` once listening.

This module is the stable entry point; the code lives in the ``comfy_gateway.testing.fake``
package, one concern per module (see its docstring).
"""
from __future__ import annotations

from comfy_gateway.testing.fake.app import TEXT_500
from comfy_gateway.testing.fake.cli import main
from comfy_gateway.testing.fake.knobs import ACTIONS, DEFAULT_KNOBS
from comfy_gateway.testing.fake.prompt_queue import MAX_HISTORY_SIZE
from comfy_gateway.testing.fake.protocol import FEATURES, MAX_UPLOAD_SIZE
from comfy_gateway.testing.fake.routes_system import MODEL_FOLDERS
from comfy_gateway.testing.fake.server import FakeComfyUI

__all__ = ["ACTIONS", "DEFAULT_KNOBS", "FEATURES", "MAX_HISTORY_SIZE", "MAX_UPLOAD_SIZE", "MODEL_FOLDERS", "TEXT_500",
           "FakeComfyUI", "main"]

if __name__ == "__main__":
    main()
