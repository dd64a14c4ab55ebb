"""Every dependency, as `Annotated` aliases: routes declare what they need, tests override it.

Every dependency is a coroutine: FastAPI runs a plain `def` dependency in a worker thread, a
thread hop on every request (bench/ measured it as most of the app's overhead over a bare
OpenAI call), and none of these ever blocks. Inside them, what no test replaces (the
settings, the request's log record) is read directly: each dependency FastAPI resolves costs
its analysis when a route registers (twice with routers) and a step on every request.

No `from __future__ import annotations` here, unlike elsewhere: FastAPI reads these
functions' signatures at each analysis, and string annotations it must evaluate every time
(1.4% of the cold start's instructions, bench/README.md).
"""

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from chat_api.caller import Caller, identify_caller
from chat_api.clients import (
    get_budget_store,
    get_key_source,
    get_openai_client_for_key,
    get_session_store,
)
from chat_api.config import Settings, get_settings
from chat_api.errors import error_responses
from chat_api.keys import KeySource
from chat_api.request_log import STATE_KEY, RequestLog
from chat_api.services.budget import Budget
from chat_api.services.chat import ChatTurn
from chat_api.services.idempotency import Idempotent
from chat_api.services.responses import Responses
from chat_api.services.upstream import Deadline, Upstream
from chat_api.store.base import BudgetStore, SessionStore
from chat_api.web_adapter import lambda_context, request_context


async def settings_dependency() -> Settings:
    """The process-wide settings."""
    return get_settings()


async def key_source_dependency() -> KeySource:
    """Where the OpenAI key and the client keys come from."""
    return get_key_source()


async def session_store_dependency() -> SessionStore:
    """The conversation store (DynamoDB or SQLite)."""
    return get_session_store()


async def budget_store_dependency() -> BudgetStore:
    """Where token budgets are counted (the conversation store's table or file)."""
    return get_budget_store()


SettingsDep = Annotated[Settings, Depends(settings_dependency)]
KeySourceDep = Annotated[KeySource, Depends(key_source_dependency)]
StoreDep = Annotated[SessionStore, Depends(session_store_dependency)]
BudgetStoreDep = Annotated[BudgetStore, Depends(budget_store_dependency)]


def get_request_log(request: Request) -> RequestLog:
    """This request's log record, opened by `RequestLogMiddleware`."""
    log: RequestLog = getattr(request.state, STATE_KEY)
    return log


async def get_caller(request: Request, keys: KeySourceDep) -> Caller:
    """Who is calling; `ClientKeyRejected` (401) before anything costs money."""
    settings = get_settings()
    return await identify_caller(
        request,
        keys,
        keyless=settings.allow_keyless_localhost,
        behind_adapter=settings.lambda_web_adapter,
    )


CallerDep = Annotated[Caller, Depends(get_caller)]


async def get_upstream(request: Request, keys: KeySourceDep) -> Upstream:
    """The OpenAI call path for this request, with its deadline.

    Mangum passes the Lambda context in the scope, the Lambda Web Adapter in a header.
    """
    settings = get_settings()
    log = get_request_log(request)
    if settings.lambda_web_adapter:
        context = lambda_context(request.scope)
        gateway_context = request_context(request.scope) or {}
    else:
        context = request.scope.get("aws.context")
        gateway_context = (request.scope.get("aws.event") or {}).get("requestContext") or {}
    deadline = Deadline.for_request(
        settings, log.started_at, context, gateway_arrival(gateway_context)
    )
    return Upstream(get_openai_client_for_key, keys, settings, deadline, log)


def gateway_arrival(context: dict[str, Any]) -> float | None:
    """When API Gateway received the request (epoch seconds), if its request context says so."""
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


async def get_budget(
    caller: CallerDep, keys: KeySourceDep, store: BudgetStoreDep, clock: ClockDep
) -> Budget:
    """The caller's token budget: TOKEN_BUDGET_OVERRIDES, the secret's, else TOKEN_BUDGET."""
    settings = get_settings()
    secret_overrides = await keys.token_budgets()
    return Budget.for_caller(
        caller.id,
        default=settings.token_budget,
        # The environment wins over the secret, as CLIENT_API_KEYS does.
        overrides={**secret_overrides, **settings.token_budget_overrides},
        kind=settings.token_budget_period,
        now=clock(),
        store=store,
    )


BudgetDep = Annotated[Budget, Depends(get_budget)]


async def get_chat_turn(
    upstream: UpstreamDep, store: StoreDep, clock: ClockDep, budget: BudgetDep
) -> ChatTurn:
    """The chat turn service, with its clients."""
    return ChatTurn(
        upstream=upstream, store=store, settings=get_settings(), clock=clock, budget=budget
    )


ChatTurnDep = Annotated[ChatTurn, Depends(get_chat_turn)]


async def get_responses(
    upstream: UpstreamDep, store: StoreDep, caller: CallerDep, clock: ClockDep, budget: BudgetDep
) -> Responses:
    """The Responses API service for this caller, within its token budget."""
    return Responses(upstream, store, get_settings(), caller.id, clock, budget)


ResponsesDep = Annotated[Responses, Depends(get_responses)]


async def get_idempotent(store: StoreDep, caller: CallerDep, clock: ClockDep) -> Idempotent:
    """`Idempotency-Key` for this caller's `/v1` requests."""
    return Idempotent(store, caller.id, clock)


IdempotentDep = Annotated[Idempotent, Depends(get_idempotent)]


def openai_compatible_router(prefix: str = "/v1", *statuses: int) -> APIRouter:
    """A router of OpenAI's API: the caller checked first, errors in OpenAI's shape."""
    return APIRouter(
        prefix=prefix,
        tags=["openai-compatible"],
        dependencies=[Depends(get_caller)],
        responses=error_responses("default", *(statuses or (404, 405)), openai_shape=True),
    )
