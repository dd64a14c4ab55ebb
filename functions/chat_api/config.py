"""Service configuration: one settings class, read once per process."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MAX_OPENAI_TIMEOUT_SECONDS = 295


class Settings(BaseSettings):
    """Every variable the service reads, with its default. `.env.example` documents each one."""

    # Local runs load `.env` through python-dotenv (uvicorn --env-file, scripts/invoke.py);
    # on Lambda the function's environment is the only source.
    # An empty variable (`OPENAI_API_KEY=` in .env) counts as unset.
    model_config = SettingsConfigDict(
        env_file=None, env_ignore_empty=True, extra="ignore", frozen=True
    )

    openai_api_key: SecretStr | None = None
    openai_api_key_secret_id: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_model: str = "gpt-4o-mini"
    # Models a client may name on /v1/chat/completions; unset or empty means only OPENAI_MODEL.
    allowed_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validate_default=True
    )
    # The most completion tokens one /v1 call may ask for (and what it gets when it names none).
    max_completion_tokens: int = Field(default=4096, gt=0)
    # What a /v1 request may ask for that raises the bill: choices per call (`n`), service
    # tiers (flex, priority... are priced differently), audio output, web search, predictions.
    max_choices: int = Field(default=1, ge=1, le=128)
    allowed_service_tiers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["auto", "default"]
    )
    allow_audio_output: bool = False
    allow_web_search: bool = False
    allow_prediction: bool = False
    # Models a client may name on /v1/embeddings, and how much one call may embed.
    allowed_embedding_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["text-embedding-3-small"]
    )
    max_embedding_inputs: int = Field(default=64, ge=1, le=2048)
    max_embedding_input_chars: int = Field(default=32_000, ge=1)
    # OpenAI's hosted tools (web_search, file_search, mcp...) a /v1/responses call may use;
    # each costs money or reaches out, so none by default. Function tools always pass.
    allowed_hosted_tools: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # `background: true` on /v1/responses: a response that outlives its request.
    allow_background: bool = False
    # Each attempt is cut at this many seconds, and at the request's deadline, whichever is first
    # (buffered mode's is under 29 s). At most a Regional stream's idle limit (5 min), less a
    # margin: in streaming mode a model may think that long before its first token.
    openai_timeout_seconds: float = Field(default=12.0, gt=0, le=MAX_OPENAI_TIMEOUT_SECONDS)
    # Retries after the first attempt, each only if it still fits before the deadline.
    openai_max_retries: int = Field(default=2, ge=0, le=5)
    # API Gateway ends the integration after 29 s; the service answers this margin before
    # the earlier of that and the Lambda timeout, so the client sees our error, not theirs.
    gateway_timeout_seconds: float = Field(default=29.0, gt=0)
    deadline_margin_seconds: float = Field(default=1.0, ge=0)
    system_prompt: str = "You are a helpful assistant."
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = False
    max_body_bytes: int = Field(default=65_536, gt=0)
    secret_cache_ttl_seconds: float = Field(default=300.0, ge=0)
    # Message and answer text stay out of the logs unless this is turned on (debugging only).
    log_message_content: bool = False
    # Powertools' own variable names, so its documentation applies as written.
    powertools_service_name: str = "chat-api"
    powertools_metrics_namespace: str = "ChatApi"
    # Keys clients must send (x-api-key or Authorization: Bearer) where API Gateway does not
    # check them itself; may instead be a field of the OpenAI key's secret.
    client_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # With no client keys, serve requests made on this machine to localhost without a key
    # (`make dev` turns it on). Refused on Lambda.
    allow_keyless_localhost: bool = False
    # Set by the template's streaming mode (run.sh under the AWS Lambda Web Adapter): the caller,
    # the deadline and the request id come from the adapter's headers, never from loopback.
    lambda_web_adapter: bool = False
    # Conversations: DynamoDB when a table is named, else the embedded SQLite file.
    sessions_table: str | None = None
    sessions_db_path: Path = Path(".data/sessions.sqlite3")
    session_ttl_seconds: int = Field(default=86_400, gt=0)
    # What one turn may send to OpenAI besides the system prompt (the new message included).
    context_max_messages: int = Field(default=40, ge=1)
    context_max_chars: int = Field(default=32_000, gt=0)
    # Tokens a caller may spend per period (UTC day or month); unset: no budget. Overrides
    # map a caller id (API Gateway key id, or `key-<digest>` of a client key) to its own.
    token_budget: int | None = Field(default=None, ge=0)
    token_budget_period: Literal["day", "month"] = "day"  # noqa: S105 (not a password)
    token_budget_overrides: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)

    @field_validator(
        "cors_allow_origins",
        "allowed_models",
        "client_api_keys",
        "allowed_service_tiers",
        "allowed_embedding_models",
        "allowed_hosted_tools",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        # A comma-separated list reads naturally in an environment variable.
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("allowed_models")
    @classmethod
    def _default_to_the_chat_model(cls, value: list[str], info: ValidationInfo) -> list[str]:
        return value or [info.data.get("openai_model", cls.model_fields["openai_model"].default)]

    @model_validator(mode="after")
    def _refuse_keyless_on_lambda(self) -> Settings:
        # The Lambda runtime sets AWS_LAMBDA_FUNCTION_NAME; loopback means nothing there.
        if self.allow_keyless_localhost and (
            self.lambda_web_adapter or os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        ):
            raise ValueError(
                "ALLOW_KEYLESS_LOCALHOST=true is for local development and cannot be used on "
                "AWS Lambda: configure client keys (or API Gateway's) instead."
            )
        return self

    @model_validator(mode="after")
    def _refuse_wildcard_with_credentials(self) -> Settings:
        if self.cors_allow_credentials and "*" in self.cors_allow_origins:
            raise ValueError(
                "CORS_ALLOW_ORIGINS='*' cannot be combined with CORS_ALLOW_CREDENTIALS=true: "
                "browsers reject it and it would let any site call the API as the user. "
                "List the allowed origins explicitly."
            )
        return self


class InvalidConfiguration(Exception):
    """The environment holds an invalid setting; the message names it, never its value."""


@cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    try:
        return Settings()
    except ValidationError as exc:
        # Pydantic's own text quotes the input, and the input holds the keys.
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])).upper() or 'settings'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise InvalidConfiguration(f"Invalid configuration: {problems}") from None
