"""`uvicorn main:app` from the repository root, as the original README promised."""

from comfy_gateway.app import create_app

app = create_app()
