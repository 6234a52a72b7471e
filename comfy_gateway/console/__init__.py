"""The web console at /ui: static HTML, CSS and JavaScript modules shipped in the package and
served as they are (no build step). It talks to the same public API as any client, with the
API key the user types (kept in the browser's localStorage, sent as a Bearer token)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"


def mount_console(app: FastAPI) -> None:
    # html=True serves index.html for /ui/; /ui itself redirects there.
    app.mount("/ui", StaticFiles(directory=STATIC, html=True), name="console")
