"""Serving the console: `/` redirects to `/console`, `/console` answers the page, `/console/assets/*` the ES modules,
styles and the vendored chart library, all from this package's `static/` folder (package data of the image).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from deepfake_gateway.console import heatmaps
from deepfake_gateway.console.security_headers import CONSOLE_PATH, ConsoleSecurityHeaders

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS_PATH = f"{CONSOLE_PATH}/assets"

pages = APIRouter(include_in_schema=False)


@pages.get("/")
async def root() -> RedirectResponse:
    """People who open the gateway's address in a browser land on the console."""
    return RedirectResponse(CONSOLE_PATH, status_code=307)


@pages.get(CONSOLE_PATH)
@pages.get(CONSOLE_PATH + "/")
async def console_page() -> FileResponse:
    """The single page; routing inside it uses the URL fragment, so every view is this same document."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")


def install_console(app: FastAPI) -> None:
    """Mount the console (page, assets, security headers) and its heatmap API route on the gateway."""
    app.include_router(heatmaps.router)
    app.include_router(pages)
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="console-assets")
    app.add_middleware(ConsoleSecurityHeaders)
