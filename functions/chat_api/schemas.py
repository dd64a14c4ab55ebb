"""Request and response bodies of the public API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

MAX_MESSAGE_CHARS = 16_000
MAX_HISTORY_TURNS = 50

# Whitespace-only text would cost a model call and say nothing: it is refused as empty.
MessageText = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=r"\S")
]


def _matching(pattern: str, message: str) -> tuple[AfterValidator, WithJsonSchema]:
    """Accept only text matching `pattern`, say `message` otherwise, and publish the pattern."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise PydanticCustomError("invalid_format", message)
        return value

    return AfterValidator(check), WithJsonSchema({"type": "string", "pattern": f"^{pattern}$"})


# 16 random bytes in URL-safe base64 (`secrets.token_urlsafe(16)`): 128 bits, 22 characters.
SessionId = Annotated[
    str, *_matching(r"[A-Za-z0-9_-]{22}", "must be a session id returned by POST /chat")
]
IdempotencyKey = Annotated[
    str, *_matching(r"[!-~]{1,255}", "must be 1 to 255 visible ASCII characters")
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
        json_schema_extra={
            "examples": [{"message": "Hello! What can you do?"}],
            # A session holds its own history: the two are not sent together.
            "not": {
                "required": ["session_id", "history"],
                "properties": {"session_id": {"type": "string"}, "history": {"minItems": 1}},
            },
        },
    )

    message: MessageText
    history: list[HistoryTurn] = Field(default_factory=list, max_length=MAX_HISTORY_TURNS)
    stream: bool = False
    session_id: SessionId | None = None
    # As OpenAI's `store`: whether the server keeps this conversation.
    store: bool | None = Field(
        default=None,
        description="Keep the conversation on the server (a session). Default: yes, unless "
        "the request sends its own `history`. `false` with `session_id` answers from the "
        "session without adding the turn to it.",
    )

    @field_validator("session_id")
    @classmethod
    def _not_with_history(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("history"):
            raise PydanticCustomError(
                "session_with_history",
                "cannot be sent with history: the session already holds the conversation "
                "(send history only when you keep the conversation yourself)",
            )
        return value


class Usage(BaseModel):
    """Tokens OpenAI counted for the call."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatResponse(BaseModel):
    """`POST /chat` answer: the tutorial's `response`, the model, usage and the session id."""

    response: str
    model: str
    usage: Usage | None = None
    session_id: str | None = Field(
        default=None,
        description="Send it with the next message to continue. Null when the request sent "
        "its own `history` (and no Idempotency-Key): then nothing is stored.",
    )


class StoredMessage(BaseModel):
    """One message of a stored conversation."""

    role: Literal["user", "assistant"]
    content: str
    created_at: datetime


class SessionResponse(BaseModel):
    """`GET /sessions/{session_id}` answer: a page of the conversation, oldest message first."""

    session_id: str
    created_at: datetime
    expires_at: datetime
    messages: list[StoredMessage]
    next_cursor: str | None = Field(
        default=None,
        description="Send it as `cursor` for the messages that follow; null on the last page.",
    )


# Where a page of a conversation starts: the `next_cursor` of the page before.
SessionCursor = Annotated[
    str, *_matching(r"[0-9]{1,12}", "must be a next_cursor returned by GET /sessions/{id}")
]


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


class UsageResponse(BaseModel):
    """`GET /usage`: the caller's token budget in the current period."""

    period: str = Field(description="The budget period: a UTC day (2026-01-31) or month (2026-01).")
    budget: int | None = Field(description="Tokens allowed per period; null: no budget.")
    spent: int = Field(description="Tokens settled at OpenAI's reported usage this period.")
    reserved: int = Field(description="Tokens held by calls still running.")
    resets_at: str = Field(description="When the period ends (ISO 8601, UTC).")
