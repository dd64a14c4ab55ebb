"""Request and response bodies of the public API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_MESSAGE_CHARS = 16_000
MAX_HISTORY_TURNS = 50

# Whitespace-only text would cost a model call and say nothing: it is refused as empty.
MessageText = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=r"\S")
]


class HistoryTurn(BaseModel):
    """One earlier turn of the conversation, as the client remembers it."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: MessageText


class ChatRequest(BaseModel):
    """`POST /chat` body: the new message, optionally earlier turns, and whether to stream."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"message": "Hello! What can you do?"}]},
    )

    message: MessageText
    history: list[HistoryTurn] = Field(default_factory=list, max_length=MAX_HISTORY_TURNS)
    stream: bool = False


class Usage(BaseModel):
    """Tokens OpenAI counted for the call."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatResponse(BaseModel):
    """`POST /chat` answer: the tutorial's `response`, plus the model and token usage."""

    response: str
    model: str
    usage: Usage | None = None


class ChatDelta(BaseModel):
    """A streamed `delta` event of `POST /chat`: the next piece of the answer."""

    text: str


class FieldError(BaseModel):
    """One invalid field of a request."""

    field: str
    message: str


class ErrorResponse(BaseModel):
    """Every error body: a clear message, and specifics where there are some."""

    error: str
    detail: list[FieldError] | None = None


class HealthResponse(BaseModel):
    """`GET /health` answer."""

    status: Literal["ok"] = "ok"


class OpenAIErrorDetail(BaseModel):
    """The inside of an error on `/v1/` routes, as OpenAI's API words it."""

    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorResponse(BaseModel):
    """Every error body on `/v1/` routes: OpenAI's shape, so its SDKs raise their usual errors."""

    error: OpenAIErrorDetail
