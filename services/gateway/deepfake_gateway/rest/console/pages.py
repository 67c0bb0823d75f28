"""Serving the console: `/` redirects to `/console`, `/console` answers the page, `/console/assets/*` the ES modules,
styles and the vendored chart library, all from this package's `static/` folder (package data of the image).

Its security headers are set by the gateway's middleware (deepfake_gateway.rest.middleware), for every path
`is_console_path` names; the one API route it added (heatmap PNGs) is in deepfake_gateway.rest.routes.heatmaps.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

CONSOLE_PATH = "/console"
STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS_PATH = f"{CONSOLE_PATH}/assets"

pages = APIRouter(include_in_schema=False)


def is_console_path(path: str) -> bool:
    """The console's pages and assets, and the root that redirects to them."""
    return path == "/" or path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")


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
    """Mount the console's page and assets on the gateway."""
    app.include_router(pages)
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="console-assets")
