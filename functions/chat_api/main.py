"""The FastAPI application, built by one factory for uvicorn, Lambda and tests alike."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from chat_api.body_limit import BodySizeLimitMiddleware
from chat_api.clients import close_openai_client
from chat_api.config import Settings, get_settings
from chat_api.errors import (
    document_error_schemas,
    error_responses,
    register_error_handlers,
    unexpected_error_response,
)
from chat_api.request_log import RequestLogMiddleware
from chat_api.routes import ROUTERS
from chat_api.web_adapter import StagePathMiddleware

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Nothing to open (clients are lazy); close the OpenAI connections on shutdown."""
    yield
    await close_openai_client()


def create_app() -> FastAPI:
    """Build the app; invalid configuration (such as CORS `*` with credentials) fails here."""
    settings = get_settings()
    app = FastAPI(
        title="Chat API",
        summary="A serverless chat API in front of OpenAI.",
        version="1.0.0",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        # "default" documents the error shape for any status, and stops FastAPI from declaring
        # its own 422 for validation errors (they are 400 here).
        responses=error_responses("default", 404, 405),
    )
    for router in ROUTERS:
        app.include_router(router)
    register_error_handlers(app)
    document_error_schemas(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Content-Type", "Authorization", "X-Api-Key", "Idempotency-Key"],
            expose_headers=["Idempotent-Replayed", "Retry-After"],
        )
    if settings.lambda_web_adapter:
        app.add_middleware(StagePathMiddleware)
    # Added last, so outermost: it sees every request, 413s and CORS preflights included.
    app.add_middleware(RequestLogMiddleware, unexpected=unexpected_error_response)
    _warn_if_open(settings)
    _warn_if_no_openai_key(settings)
    return app


def _operation_id(route: APIRoute) -> str:
    """The route function's name (`chat`, `get_session`): what client generators name methods."""
    return route.name


def _warn_if_open(settings: Settings) -> None:
    """Say at start-up when no client keys are configured (a secret may still hold some)."""
    if settings.client_api_keys or settings.openai_api_key_secret_id:
        return
    if settings.allow_keyless_localhost:
        logger.warning(
            "Keyless local mode (ALLOW_KEYLESS_LOCALHOST=true, CLIENT_API_KEYS is not set): "
            "requests made on this machine to localhost are served without a key; requests "
            "with another Host or through a proxy get 401."
        )
    else:
        logger.warning(
            "CLIENT_API_KEYS is not set: every request without an API Gateway key gets 401. "
            "Set CLIENT_API_KEYS, or ALLOW_KEYLESS_LOCALHOST=true for local development."
        )


def _warn_if_no_openai_key(settings: Settings) -> None:
    """Say at start-up, once, that chat answers 503 until an OpenAI key is configured."""
    if settings.openai_api_key is None and not settings.openai_api_key_secret_id:
        logger.warning(
            "No OpenAI API key is configured: POST /chat and /v1/chat/completions answer 503. "
            "Set OPENAI_API_KEY (in .env for make dev), or OPENAI_API_KEY_SECRET_ID to a "
            "Secrets Manager secret that holds it. For a local OpenAI-compatible server, set "
            "OPENAI_BASE_URL (e.g. http://localhost:11434/v1), OPENAI_MODEL and any non-empty "
            "OPENAI_API_KEY."
        )
