"""`POST /v1/embeddings`: OpenAI's Embeddings API, for the allowed embedding models."""

from __future__ import annotations

from fastapi import Response
from openai.types import CreateEmbeddingResponse

from chat_api.compat_schemas import EmbeddingRequest
from chat_api.deps import BudgetDep, SettingsDep, UpstreamDep, openai_compatible_router
from chat_api.errors import error_responses
from chat_api.services.embeddings import create_embeddings

router = openai_compatible_router()


@router.post(
    "/embeddings",
    response_model=CreateEmbeddingResponse,
    responses=error_responses(400, 401, 413, 429, 502, 503, 504, openai_shape=True),
)
async def embeddings(
    request: EmbeddingRequest, upstream: UpstreamDep, settings: SettingsDep, budget: BudgetDep
) -> Response:
    """Create embeddings, as OpenAI's `POST /v1/embeddings` does."""
    answer = await create_embeddings(upstream, request, settings, budget)
    # base64 embeddings are strings where the SDK's model declares floats: sent as they came.
    body = answer.to_json(indent=None, warnings=False)
    return Response(body, media_type="application/json")
