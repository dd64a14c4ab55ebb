"""Dependencies as `Annotated` aliases: routes declare what they need, tests override it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from openai import AsyncOpenAI

from chat_api.caller import Caller, get_caller
from chat_api.clients import get_key_source, get_openai_client
from chat_api.config import Settings, get_settings
from chat_api.request_log import STATE_KEY, RequestLog
from chat_api.services.api_key import OpenAIKeySource
from chat_api.services.upstream import Deadline, Upstream

SettingsDep = Annotated[Settings, Depends(get_settings)]
OpenAIDep = Annotated[AsyncOpenAI, Depends(get_openai_client)]
KeySourceDep = Annotated[OpenAIKeySource, Depends(get_key_source)]


def get_request_log(request: Request) -> RequestLog:
    """This request's log record, opened by `RequestLogMiddleware`."""
    log: RequestLog = getattr(request.state, STATE_KEY)
    return log


RequestLogDep = Annotated[RequestLog, Depends(get_request_log)]


def get_upstream(
    request: Request,
    client: OpenAIDep,
    keys: KeySourceDep,
    settings: SettingsDep,
    log: RequestLogDep,
) -> Upstream:
    """The OpenAI call path for this request, with its deadline (Mangum passes the context)."""
    deadline = Deadline.for_request(settings, log.started_at, request.scope.get("aws.context"))
    return Upstream(client, keys, settings, deadline, log)


UpstreamDep = Annotated[Upstream, Depends(get_upstream)]


CallerDep = Annotated[Caller, Depends(get_caller)]
