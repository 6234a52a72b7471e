"""Turning a request into the prompt ComfyUI runs."""
