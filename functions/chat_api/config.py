"""Service configuration: one settings class, read once per process."""

from __future__ import annotations

from functools import cache
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
    # Each attempt times out and is retried at most once, so a call ends before
    # API Gateway's 29 s integration limit: 2 x 12 s plus backoff.
    openai_timeout_seconds: float = Field(default=12.0, gt=0, le=28)
    openai_max_retries: int = Field(default=1, ge=0, le=3)
    system_prompt: str = "You are a helpful assistant."
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = False
    max_body_bytes: int = Field(default=65_536, gt=0)
    secret_cache_ttl_seconds: float = Field(default=300.0, ge=0)

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # A comma-separated list reads naturally in an environment variable.
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_wildcard_with_credentials(self) -> Settings:
        if self.cors_allow_credentials and "*" in self.cors_allow_origins:
            raise ValueError(
                "CORS_ALLOW_ORIGINS='*' cannot be combined with CORS_ALLOW_CREDENTIALS=true: "
                "browsers reject it and it would let any site call the API as the user. "
                "List the allowed origins explicitly."
            )
        return self


@cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
