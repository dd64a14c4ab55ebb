"""OpenAI-compatible chat completions: vet the client's request, pass it on, relay the answer."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from openai.types import Model

from chat_api.compat_schemas import ModelList
from chat_api.exceptions import InvalidRequest, NotFound, UpstreamRejectedRequest
from chat_api.services.budget import completion_bound
from chat_api.services.guards import (
    check_choices,
    check_enabled,
    check_model,
    check_service_tier,
    check_token_cap,
)
from chat_api.services.relay import open_chunk_stream, to_usage

if TYPE_CHECKING:
    from collections.abc import Iterator

    from openai import AsyncOpenAI, AsyncStream
    from openai.types.chat import ChatCompletion

    from chat_api.compat_schemas import ChatCompletionRequest
    from chat_api.config import Settings
    from chat_api.services.budget import Budget, Meter
    from chat_api.services.upstream import Upstream


def list_models(settings: Settings) -> ModelList:
    """The models clients may name, in OpenAI's list format."""
    return ModelList(
        data=[
            Model(id=model, object="model", created=0, owned_by="system")
            for model in settings.allowed_models
        ]
    )


def retrieve_model(model: str, settings: Settings) -> Model:
    """One model clients may name, as OpenAI's `GET /v1/models/{model}` answers; else 404."""
    if model not in (*settings.allowed_models, *settings.allowed_embedding_models):
        raise NotFound(
            f"The model '{model}' does not exist on this service.", code="model_not_found"
        )
    return Model(id=model, object="model", created=0, owned_by="system")


def upstream_params(request: ChatCompletionRequest, settings: Settings) -> dict[str, Any]:
    """The parameters sent to OpenAI, or `InvalidRequest` if configuration does not allow them."""
    check_model(request.model, settings.allowed_models)
    cap = settings.max_completion_tokens
    for name in ("max_tokens", "max_completion_tokens"):
        check_token_cap(name, getattr(request, name), cap)
    _check_costly(request, settings)
    params = request.model_dump(exclude_unset=True, exclude={"stream"})
    if unsendable := find_unsendable(params):
        field, problem = unsendable
        raise InvalidRequest(
            f"Invalid field '{field}': {problem}", param=field, code="invalid_value"
        )
    if request.max_tokens is None and request.max_completion_tokens is None:
        # Without a limit the model may write until its own maximum, at the owner's expense.
        params["max_completion_tokens"] = cap
    return params


def _check_costly(request: ChatCompletionRequest, settings: Settings) -> None:
    """The parameters that raise the owner's bill, within what configuration allows."""
    check_choices(request.n, settings)
    check_service_tier(request.service_tier, settings)
    check_enabled(
        "modalities",
        "audio" in (request.modalities or ()),
        settings.allow_audio_output,
        "ALLOW_AUDIO_OUTPUT",
    )
    check_enabled(
        "audio", request.audio is not None, settings.allow_audio_output, "ALLOW_AUDIO_OUTPUT"
    )
    check_enabled(
        "web_search_options",
        request.web_search_options is not None,
        settings.allow_web_search,
        "ALLOW_WEB_SEARCH",
    )
    check_enabled(
        "prediction", request.prediction is not None, settings.allow_prediction, "ALLOW_PREDICTION"
    )


async def create_completion(
    upstream: Upstream, request: ChatCompletionRequest, settings: Settings, budget: Budget
) -> ChatCompletion:
    """One non-streaming completion, within the caller's token budget."""
    params = upstream_params(request, settings)
    upstream.log.model = request.model

    async def create(client: AsyncOpenAI) -> ChatCompletion:
        # The parameters are typed by the request model; unpacked, mypy sees them as Any.
        return cast("ChatCompletion", await client.chat.completions.create(**params))

    async with budget.spending(lambda: completion_bound(params)) as meter:
        with refusal_is_the_clients():
            completion = await upstream.call(create)
        meter.settle(to_usage(completion.usage))
    upstream.log.model = completion.model
    upstream.log.usage = to_usage(completion.usage)
    return completion


async def open_completion_stream(
    upstream: Upstream, request: ChatCompletionRequest, settings: Settings, budget: Budget
) -> tuple[AsyncStream[object], Meter]:
    """Start a streaming completion: failures before the first byte raise here, as usual.

    OpenAI is always asked for the usage chunk, which settles the budget; the meter returned
    must be closed when the stream ends (`async with meter`).
    """
    params = upstream_params(request, settings)
    params["stream_options"] = {**(params.get("stream_options") or {}), "include_usage": True}
    upstream.log.model = request.model

    meter = await budget.admit(lambda: completion_bound(params))
    async with meter.settling_on_failure():
        with refusal_is_the_clients():
            stream = await upstream.call(
                lambda client: open_chunk_stream(client, params), streamed=True
            )
    meter.answering()
    return stream, meter


def find_unsendable(value: object, path: str = "") -> tuple[str, str] | None:
    """The first value JSON cannot carry to OpenAI, with its path and what is wrong with it.

    Python's JSON parser accepts lone surrogates ("\\ud800") and NaN, Infinity or 1e999 in the
    free-form parts of a request (tools, response_format, message extras), but neither UTF-8
    nor strict JSON can send them on: caught here, they are the client's 400, not a 500.
    """
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return path, "must be valid Unicode text (it holds a lone surrogate)"
    elif isinstance(value, float) and not math.isfinite(value):
        return path, "must be a finite number"
    elif isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if found := find_unsendable(key, inner) or find_unsendable(item, inner):
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if found := find_unsendable(item, f"{path}[{index}]"):
                return found
    return None


@contextmanager
def refusal_is_the_clients() -> Iterator[None]:
    """OpenAI's 400 for a request the client composed is the client's 400, not a 502."""
    try:
        yield
    except UpstreamRejectedRequest as exc:
        # Its text is not forwarded: it can quote the request.
        raise InvalidRequest(
            "OpenAI refused the request as invalid "
            "(for example, too long for the model's context window).",
            code="upstream_rejected",
        ) from exc
