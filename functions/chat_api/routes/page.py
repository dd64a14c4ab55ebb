"""`GET /`: the chat page, and its static files, served by the API itself.

Every URL the page uses is relative, so it works at `http://localhost:8000/` and at the
stage URL (`.../Prod/`) alike. The page holds no secret: these routes need no key.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from starlette.exceptions import HTTPException

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Only the page's own kinds of file are served (not the vendored READMEs and licences).
SERVED_SUFFIXES = {".css", ".js", ".mjs"}
# The answer is model output, so untrusted: no inline script, no other origin, and HTML
# reaches the DOM only through DOMPurify's Trusted Types policy.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types dompurify",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate each time: a new deployment's page never runs with an old script.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page(request: Request) -> Response:
    """The chat page."""
    if stage_root := _stage_root_without_slash(request):
        # At `/Prod` the page's relative URLs would resolve outside the stage.
        return RedirectResponse(f"{stage_root.rsplit('/', 1)[-1]}/", status_code=308)
    return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)


@router.get("/static/{name:path}")
async def static_file(name: str) -> Response:
    """One of the page's scripts or style sheets."""
    path = served_files().get(name)
    if path is None:
        raise HTTPException(404)
    return FileResponse(path, headers=SECURITY_HEADERS)


@cache
def served_files() -> dict[str, Path]:
    """The files `/static/` serves, by their path below it (read once, on first use)."""
    return {
        path.relative_to(STATIC_DIR).as_posix(): path
        for path in STATIC_DIR.rglob("*")
        if path.is_file() and path.suffix in SERVED_SUFFIXES
    }


def _stage_root_without_slash(request: Request) -> str | None:
    """The path API Gateway was asked for, when it is the stage root without its last slash."""
    event: dict[str, Any] = request.scope.get("aws.event") or {}
    requested = (event.get("requestContext") or {}).get("path")
    if isinstance(requested, str) and requested and not requested.endswith("/"):
        return requested
    return None
