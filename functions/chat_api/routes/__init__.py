"""Every route of the API: the routers, in the order the app factory includes them."""

from __future__ import annotations

from chat_api.routes import (
    chat,
    completions,
    embeddings,
    health,
    page,
    responses,
    sessions,
    usage,
)

# Included one by one, not through one parent router: FastAPI checks an included router's
# routes when it is included without a prefix, and for a router of routers that means building
# every route's state at start-up; included directly, each router's is built on first use.
ROUTERS = (
    chat.router,
    sessions.router,
    usage.router,
    completions.router,
    embeddings.router,
    responses.router,
    health.router,
    page.router,
)
