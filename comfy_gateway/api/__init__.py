"""HTTP only: routers and request/response schemas. Never talks to ComfyUI itself."""
