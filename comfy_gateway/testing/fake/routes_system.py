"""HTTP routes describing the server: /system_stats, /features, /object_info, /embeddings and
/models, answered as ComfyUI 0.3.75 on CPU with no models installed answers them."""
from __future__ import annotations

import os
import sys

from aiohttp import web

from comfy_gateway.testing.fake.nodes import Node
from comfy_gateway.testing.fake.protocol import FEATURES

MODEL_FOLDERS = ["checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
                 "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen",
                 "upscale_models", "latent_upscale_models", "custom_nodes", "hypernetworks", "photomaker",
                 "classifiers", "model_patches", "audio_encoders"]


class SystemRoutes:
    def __init__(self, nodes: dict[str, Node]):
        self.nodes = nodes

    def routes(self) -> list[tuple[str, str, object]]:
        return [("GET", "/system_stats", self.system_stats), ("GET", "/features", self.features),
                ("GET", "/object_info", self.object_info), ("GET", "/object_info/{node_class}", self.object_info_node),
                ("GET", "/embeddings", self.embeddings), ("GET", "/models", self.models),
                ("GET", "/models/{folder}", self.models_folder)]

    async def system_stats(self, request: web.Request) -> web.Response:
        try:
            page = os.sysconf("SC_PAGE_SIZE")
            total, free = os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page
        except (ValueError, OSError, AttributeError):
            total = free = 0
        return web.json_response({
            "system": {"os": os.name, "ram_total": total, "ram_free": free, "comfyui_version": "0.3.75",
                       "required_frontend_version": "1.32.9", "installed_templates_version": "0.7.25",
                       "required_templates_version": "0.7.25", "python_version": sys.version,
                       "pytorch_version": "2.13.0+cpu", "embedded_python": False, "argv": sys.argv},
            "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": total, "vram_free": free,
                         "torch_vram_total": total, "torch_vram_free": free}]})

    async def features(self, request: web.Request) -> web.Response:
        return web.json_response(FEATURES)

    async def object_info(self, request: web.Request) -> web.Response:
        return web.json_response({name: n.object_info() for name, n in self.nodes.items()})

    async def object_info_node(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        return web.json_response({name: self.nodes[name].object_info()} if name in self.nodes else {})

    async def embeddings(self, request: web.Request) -> web.Response:
        return web.json_response([])

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(MODEL_FOLDERS)

    async def models_folder(self, request: web.Request) -> web.Response:
        if request.match_info["folder"] not in MODEL_FOLDERS:
            return web.Response(status=404)
        return web.json_response([])
