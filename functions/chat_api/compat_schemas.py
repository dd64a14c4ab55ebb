"""Request and list bodies of the OpenAI-compatible `/v1/` API.

Responses reuse the `openai` SDK's own models (`ChatCompletion`, `ChatCompletionChunk`,
`Model`). The request accepts OpenAI's Chat Completions parameters (those of the pinned SDK's
`completion_create_params`) and nothing else: like OpenAI itself, an unknown parameter is a
400, so nothing reaches OpenAI unvetted and no field chooses an endpoint. The ones that raise
the owner's bill (`n`, `service_tier`, audio output, web search, predictions) are bounded by
configuration in `services/completions.py`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from openai.types import Model
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

MAX_MESSAGES = 500
MAX_TOOLS = 128
MAX_STOP_SEQUENCES = 4


def refuse_null(value: object) -> object:
    """Left out, a parameter takes OpenAI's default; OpenAI refuses an explicit null for some."""
    if value is None:
        raise PydanticCustomError("null_not_allowed", "must not be null (leave it out instead)")
    return value


# OpenAI's schema types these fields nullable, yet refuses an explicit null in them.
NotNull = BeforeValidator(refuse_null)


class ChatMessage(BaseModel):
    """One message; its fields beyond `role` and `content` pass through to OpenAI unchanged."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    """`stream_options`: ask for the final usage chunk."""

    model_config = ConfigDict(extra="forbid")

    include_usage: bool | None = None
    include_obfuscation: bool | None = None


Penalty = Annotated[float, Field(ge=-2, le=2)]
ServiceTier = Literal["auto", "default", "flex", "scale", "priority", "fast"]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
Tools = Annotated[list[dict[str, Any]], Field(max_length=MAX_TOOLS)]
ToolChoice = Literal["none", "auto", "required"] | dict[str, Any]
User = Annotated[str, Field(max_length=256)]
InputItems = Annotated[list[dict[str, Any]], Field(max_length=MAX_MESSAGES)]
# OpenAI's metadata: up to 16 pairs, keys up to 64 characters, values up to 512.
Metadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(max_length=16),
]


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions` body: the Chat Completions parameters this service allows."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}]
        },
    )

    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    model: str = Field(min_length=1)
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    user: Annotated[User | None, NotNull] = None
    response_format: Annotated[dict[str, Any] | None, NotNull] = None
    tools: Annotated[Tools | None, NotNull] = None
    tool_choice: Annotated[ToolChoice | None, NotNull] = None
    parallel_tool_calls: Annotated[bool | None, NotNull] = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    # Cost-bounded by configuration (MAX_CHOICES, ALLOWED_SERVICE_TIERS, ALLOW_*).
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    service_tier: ServiceTier | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: dict[str, Any] | None = None
    web_search_options: Annotated[dict[str, Any] | None, NotNull] = None
    prediction: dict[str, Any] | None = None
    # Free of extra cost: passed as sent.
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    logit_bias: dict[str, Annotated[int, Field(ge=-100, le=100)]] | None = None
    metadata: Metadata | None = None
    store: bool | None = None
    reasoning_effort: ReasoningEffort | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    prompt_cache_key: Annotated[str, Field(max_length=1024)] | None = None
    prompt_cache_options: Annotated[dict[str, Any] | None, NotNull] = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    safety_identifier: Annotated[str, Field(max_length=128)] | None = None
    moderation: dict[str, Any] | None = None
    # Deprecated by OpenAI in favour of `tools` and `tool_choice`, still accepted there.
    functions: Annotated[Tools | None, NotNull] = None
    function_call: Annotated[Literal["none", "auto"] | dict[str, Any] | None, NotNull] = None

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, value: StreamOptions | None, info: ValidationInfo) -> object:
        if value is not None and not info.data.get("stream"):
            raise PydanticCustomError(
                "stream_options_without_stream", "is only allowed when 'stream' is true"
            )
        return value


class ModelList(BaseModel):
    """`GET /v1/models` answer: the models clients may name, in OpenAI's list format."""

    object: Literal["list"] = "list"
    data: list[Model]


TokenIds = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
EmbeddingText = Annotated[str, Field(min_length=1)]


class EmbeddingRequest(BaseModel):
    """`POST /v1/embeddings` body: OpenAI's parameters; sizes are bounded in the service."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"model": "text-embedding-3-small", "input": "Hi"}]},
    )

    input: Annotated[
        EmbeddingText
        | Annotated[list[EmbeddingText], Field(min_length=1)]
        | TokenIds
        | Annotated[list[TokenIds], Field(min_length=1)],
        NotNull,
    ]
    model: Annotated[str, NotNull] = Field(min_length=1)
    dimensions: Annotated[int, Field(ge=1, le=3072)] | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: Annotated[User | None, NotNull] = None


class ResponseCreateRequest(BaseModel):
    """`POST /v1/responses` body: OpenAI's Responses parameters (the pinned SDK's).

    Free-form parts are checked in `services/responses.py`: hosted tools, `background`,
    `conversation`, `prompt`, and who owns `previous_response_id`.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"model": "gpt-4o-mini", "input": "Hi"}]},
    )

    model: str = Field(min_length=1)
    input: Annotated[str | InputItems | None, NotNull] = None
    instructions: str | None = None
    max_output_tokens: Annotated[int, Field(ge=16)] | None = None
    max_tool_calls: Annotated[int, Field(ge=1)] | None = None
    metadata: Metadata | None = None
    parallel_tool_calls: bool | None = None
    previous_response_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    store: bool | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    text: Annotated[dict[str, Any] | None, NotNull] = None
    reasoning: dict[str, Any] | None = None
    tools: Annotated[Tools | None, NotNull] = None
    tool_choice: Annotated[ToolChoice | None, NotNull] = None
    include: list[str] | None = None
    service_tier: ServiceTier | None = None
    safety_identifier: Annotated[str, Field(max_length=128)] | None = None
    prompt_cache_key: Annotated[str, Field(max_length=1024)] | None = None
    prompt_cache_options: Annotated[dict[str, Any] | None, NotNull] = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    user: Annotated[User | None, NotNull] = None
    moderation: dict[str, Any] | None = None
    context_management: list[dict[str, Any]] | None = None
    image: Annotated[dict[str, Any] | None, NotNull] = None
    access_programs: Annotated[dict[str, Any] | None, NotNull] = None
    # Refused or bounded by the service, but OpenAI's: named, so the 400 says why.
    background: bool | None = None
    background_options: Annotated[dict[str, Any] | None, NotNull] = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
