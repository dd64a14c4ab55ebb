"""AWS Lambda entry point: Mangum adapts API Gateway, ALB and function URL events to the app."""

from __future__ import annotations

import gc

# Init makes some 140,000 objects the cyclic GC tracks (modules, classes, schemas) and frees
# almost none, yet their allocations trigger ~80 passes that find nothing: 9% of the cold
# start (README, "The artifact"). So the collector stays off until the app is built, and
# `gc.freeze()` then moves all of it out of later passes' way.
gc.disable()

import asyncio  # noqa: E402 (imported with the collector off, as everything below)
from typing import TYPE_CHECKING  # noqa: E402

# openai first, from the top level, as a bare handler imports it. CPython 3.13 releases without
# the gh-142183 fix (this machine's 3.13.0) unmap a 16 KiB chunk of the frame stack each time
# a call returns across a chunk boundary; imported beneath chat_api.main, openai's classes were
# built right on one: 3,300 mmap/munmap pairs, each page faulting (README, "The artifact").
import openai  # noqa: E402, F401
from mangum import Mangum  # noqa: E402
from mangum.handlers import APIGateway  # noqa: E402

from chat_api.main import create_app  # noqa: E402
from chat_api.snapstart import register_snapstart_hooks  # noqa: E402

if TYPE_CHECKING:
    from mangum.types import Scope


class StageAwareAPIGateway(APIGateway):
    """REST API events, with the stage prefix (`/Prod`) as the ASGI root path.

    On the execute-api URL the client sees `/Prod/docs`; without a root path the docs page
    would load its schema from `/openapi.json`, outside the stage.
    """

    @property
    def scope(self) -> Scope:
        scope = super().scope
        requested_path = self.event["requestContext"].get("path") or ""
        route_path = scope["path"]
        if requested_path.endswith(route_path) and requested_path != route_path:
            scope["root_path"] = requested_path[: -len(route_path)]
            scope["path"] = requested_path
        return scope


# Mangum calls asyncio.get_event_loop(), which warns on Python 3.12+ without a current loop.
# One loop for the container also keeps the cached OpenAI client's connections reusable.
asyncio.set_event_loop(asyncio.new_event_loop())

handler = Mangum(create_app(), lifespan="off", custom_handlers=[StageAwareAPIGateway])
register_snapstart_hooks()
gc.freeze()
gc.enable()
