"""Test doubles for the gateway: a protocol-faithful fake ComfyUI server (see fake_comfyui)."""
