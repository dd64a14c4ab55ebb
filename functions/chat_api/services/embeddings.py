"""OpenAI-compatible embeddings: allowed models only, bounded input, the same call path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chat_api.exceptions import InvalidRequest
from chat_api.schemas import Usage
from chat_api.services.budget import embedding_bound
from chat_api.services.completions import find_unsendable, refusal_is_the_clients
from chat_api.services.guards import check_model

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types import CreateEmbeddingResponse

    from chat_api.compat_schemas import EmbeddingRequest
    from chat_api.config import Settings
    from chat_api.services.budget import Budget
    from chat_api.services.upstream import Upstream


async def create_embeddings(
    upstream: Upstream, request: EmbeddingRequest, settings: Settings, budget: Budget
) -> CreateEmbeddingResponse:
    """Embed the input, as OpenAI's `POST /v1/embeddings` does, within the caller's budget."""
    check_model(request.model, settings.allowed_embedding_models)
    _check_size(request, settings)
    params = request.model_dump(exclude_unset=True)
    if unsendable := find_unsendable(params):
        field, problem = unsendable
        raise InvalidRequest(
            f"Invalid field '{field}': {problem}", param=field, code="invalid_value"
        )
    # OpenAI's default, said outright: left out, the SDK would ask for base64 and decode it.
    params.setdefault("encoding_format", "float")
    upstream.log.model = request.model

    async def create(client: AsyncOpenAI) -> CreateEmbeddingResponse:
        return await client.embeddings.create(**params)

    async with budget.spending(lambda: embedding_bound(params)) as meter:
        with refusal_is_the_clients():
            answer = await upstream.call(create)
        usage = Usage(
            prompt_tokens=answer.usage.prompt_tokens,
            completion_tokens=0,
            total_tokens=answer.usage.total_tokens,
        )
        meter.settle(usage)
    upstream.log.model, upstream.log.usage = answer.model, usage
    return answer


def _check_size(request: EmbeddingRequest, settings: Settings) -> None:
    """At most MAX_EMBEDDING_INPUTS inputs, each at most MAX_EMBEDDING_INPUT_CHARS long."""
    value = request.input
    # One text, or one token array, is one input; a list of either is several.
    inputs: list[Any] = [value] if isinstance(value, str) or isinstance(value[0], int) else [*value]
    if len(inputs) > settings.max_embedding_inputs:
        raise InvalidRequest(
            f"'input' may hold at most {settings.max_embedding_inputs} inputs on this service.",
            param="input",
            code="invalid_value",
        )
    longest = max(len(item) for item in inputs)
    if longest > settings.max_embedding_input_chars:
        raise InvalidRequest(
            f"Each input may be at most {settings.max_embedding_input_chars} characters "
            "(or tokens) long on this service.",
            param="input",
            code="invalid_value",
        )
