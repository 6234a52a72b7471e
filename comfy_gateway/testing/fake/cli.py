"""Command line of the fake: ``python -m comfy_gateway.testing.fake_comfyui --port 8188
--base-dir DIR`` prints ``ready http://HOST:PORT`` once listening and serves until SIGINT/SIGTERM."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal

from comfy_gateway.testing.fake.server import FakeComfyUI


async def _serve(args: argparse.Namespace) -> None:
    knobs = json.loads(args.knobs) if args.knobs else {}
    fake = FakeComfyUI(args.base_dir, enable_assets=args.enable_assets, **knobs)
    await fake.start(args.host, args.port)
    print(f"ready {fake.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await stop.wait()
    await fake.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m comfy_gateway.testing.fake_comfyui",
                                description="Protocol-faithful fake ComfyUI 0.3.75 server.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8188, help="0 picks a free port (printed on the ready line)")
    p.add_argument("--base-dir", required=True, help="holds input/, output/ and temp/")
    p.add_argument("--knobs", default="", help='initial knobs as JSON, e.g. \'{"node_delay": 0.1}\'')
    p.add_argument("--enable-assets", action="store_true",
                   help="serve ComfyUI 0.33's assets API (/api/assets) and its model loaders")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(args))
