"""comfy-gateway: a production HTTP API in front of ComfyUI."""

__version__ = "0.1.0"
