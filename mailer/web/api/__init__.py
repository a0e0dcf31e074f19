"""The HTTP API, ``/api/v1``: what the upstream pipeline (and anything else with a token)
uses to hand an issue over and follow its send. Mounted by ``create_app`` with
``app.include_router(api_router())``.

    issues      POST /issues, GET /issues/{key} and its previews      (mailer.web.api.issues)
    campaigns   POST/GET /campaigns, GET /campaigns/{id}, pause ...   (mailer.web.api.campaigns)
    people      GET /lists, POST /lists/{slug}/subscribers,            (mailer.web.api.people)
                GET/DELETE /subscribers/{email}, GET /stats
    documents   GET /openapi.json (only the API's routes), GET /docs (Swagger UI served from
                the fastapi-offline package: no CDN, and a CSP of its own for that page)

Every route is guarded and fails the same way (:mod:`mailer.web.api.route`) and calls the
use cases every entrance calls (:mod:`mailer.sending.publish`, the store, ops).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

from mailer.web.api import campaigns, issues, people

__all__ = ["DOCS_CSP", "PREFIX", "api_router"]

PREFIX = "/api/v1"
TITLE = "brief-mailer API"
DESCRIPTION = (
    "Hand an issue over, send it to a list, follow the send. Every call needs "
    "`Authorization: Bearer TOKEN` (`mailer tokens create --name NAME --role editor|ops`). "
    'Errors are JSON: `{"error": "..."}`. Campaigns are sent by a running `mailer worker`.'
)
#: the docs page runs Swagger UI's own script and styles, from this server only
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
#: Swagger UI 5 (OpenAPI 3.1, which FastAPI writes) as the fastapi-offline package ships it
_ASSETS = Path(fastapi_offline.__file__).parent / "static"
_SERVED = {  # name -> media type: the only files /api/v1/docs/{name} serves
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
}
_INIT_JS = (
    'window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", '
    "deepLinking: true, persistAuthorization: false});\n"
)
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>brief-mailer API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<main id="swagger-ui"></main>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
"""


def api_router() -> APIRouter:
    """Every ``/api/v1`` route, its OpenAPI document and its docs page."""
    router = APIRouter()
    parts = (issues.router, campaigns.router, people.router)
    for part in parts:
        router.include_router(part)
    routes = [route for part in parts for route in part.routes]
    cached: dict[str, Any] = {}

    def openapi_json() -> Response:
        if "doc" not in cached:
            cached["doc"] = get_openapi(
                title=TITLE, version="1", description=DESCRIPTION, routes=routes
            )
        return JSONResponse(cached["doc"], headers={"Cache-Control": "no-cache"})

    router.add_api_route(f"{PREFIX}/openapi.json", openapi_json, include_in_schema=False)
    router.add_api_route(f"{PREFIX}/docs", docs_page, include_in_schema=False)
    router.add_api_route(f"{PREFIX}/docs/{{name}}", docs_asset, include_in_schema=False)
    return router


def docs_page() -> Response:
    return HTMLResponse(_PAGE, headers={"Content-Security-Policy": DOCS_CSP})


def docs_asset(name: str) -> Response:
    """Swagger UI's files (a fixed list: no path from the request reaches the disk)."""
    if name == "init.js":
        return Response(_INIT_JS, media_type="text/javascript")
    media = _SERVED.get(name)
    if media is None:
        raise HTTPException(404)
    return FileResponse(
        _ASSETS / name, media_type=media, headers={"Cache-Control": "public, max-age=86400"}
    )
