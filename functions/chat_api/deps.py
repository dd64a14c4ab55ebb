"""Every dependency, as `Annotated` aliases: routes declare what they need, tests override it.

Every dependency is a coroutine: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop on every request (bench/ measured it as most of the app's overhead over a bare
OpenAI call), and none of these ever blocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from chat_api.caller import Caller, identify_caller
from chat_api.clients import get_key_source, get_openai_client_for_key, get_session_store
from chat_api.config import Settings, get_settings
from chat_api.keys import KeySource
from chat_api.request_log import STATE_KEY, RequestLog
from chat_api.services.chat import ChatTurn
from chat_api.services.idempotency import Idempotent
from chat_api.services.responses import Responses
from chat_api.services.upstream import Deadline, Upstream
from chat_api.store.base import SessionStore


async def settings_dependency() -> Settings:
    """The process-wide settings."""
    return get_settings()


async def key_source_dependency() -> KeySource:
    """Where the OpenAI key and the client keys come from."""
    return get_key_source()


async def session_store_dependency() -> SessionStore:
    """The conversation store (DynamoDB or SQLite)."""
    return get_session_store()


SettingsDep = Annotated[Settings, Depends(settings_dependency)]
KeySourceDep = Annotated[KeySource, Depends(key_source_dependency)]
StoreDep = Annotated[SessionStore, Depends(session_store_dependency)]


async def get_request_log(request: Request) -> RequestLog:
    """This request's log record, opened by `RequestLogMiddleware`."""
    log: RequestLog = getattr(request.state, STATE_KEY)
    return log


RequestLogDep = Annotated[RequestLog, Depends(get_request_log)]


async def get_caller(request: Request, keys: KeySourceDep, settings: SettingsDep) -> Caller:
    """Who is calling; `ClientKeyRejected` (401) before anything costs money."""
    return await identify_caller(request, keys, keyless=settings.allow_keyless_localhost)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def get_upstream(
    request: Request, keys: KeySourceDep, settings: SettingsDep, log: RequestLogDep
) -> Upstream:
    """The OpenAI call path for this request, with its deadline (Mangum passes the context)."""
    deadline = Deadline.for_request(
        settings, log.started_at, request.scope.get("aws.context"), gateway_arrival(request)
    )
    return Upstream(get_openai_client_for_key, keys, settings, deadline, log)


def gateway_arrival(request: Request) -> float | None:
    """When API Gateway received the request (epoch seconds), if the event says so."""
    event = request.scope.get("aws.event") or {}
    context = event.get("requestContext") or {}
    # REST APIs name it requestTimeEpoch, HTTP APIs and function URLs timeEpoch (both in ms).
    epoch_ms = context.get("requestTimeEpoch", context.get("timeEpoch"))
    if isinstance(epoch_ms, int | float) and not isinstance(epoch_ms, bool):
        return epoch_ms / 1000
    return None


UpstreamDep = Annotated[Upstream, Depends(get_upstream)]


async def get_clock() -> Callable[[], float]:
    """Wall-clock time in epoch seconds (tests replace it to move time)."""
    return time.time


ClockDep = Annotated[Callable[[], float], Depends(get_clock)]


async def get_chat_turn(
    upstream: UpstreamDep, store: StoreDep, settings: SettingsDep, clock: ClockDep
) -> ChatTurn:
    """The chat turn service, with its clients."""
    return ChatTurn(upstream=upstream, store=store, settings=settings, clock=clock)


ChatTurnDep = Annotated[ChatTurn, Depends(get_chat_turn)]


async def get_responses(
    upstream: UpstreamDep,
    store: StoreDep,
    settings: SettingsDep,
    caller: CallerDep,
    clock: ClockDep,
) -> Responses:
    """The Responses API service for this caller."""
    return Responses(upstream, store, settings, caller.id, clock)


ResponsesDep = Annotated[Responses, Depends(get_responses)]


async def get_idempotent(store: StoreDep, caller: CallerDep, clock: ClockDep) -> Idempotent:
    """`Idempotency-Key` for this caller's `/v1` requests."""
    return Idempotent(store, caller.id, clock)


IdempotentDep = Annotated[Idempotent, Depends(get_idempotent)]
