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
    """`POST /chat` body: the new message and, optionally, earlier turns."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"message": "Hello! What can you do?"}]},
    )

    message: MessageText
    history: list[HistoryTurn] = Field(default_factory=list, max_length=MAX_HISTORY_TURNS)


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
