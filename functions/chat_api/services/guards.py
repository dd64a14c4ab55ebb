"""What a `/v1` request may ask of OpenAI at the owner's expense: the checks all routes share.

Each check raises `InvalidRequest` naming the parameter; a value that is OpenAI's default
(left out, or null where OpenAI allows null) always passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chat_api.exceptions import InvalidRequest

if TYPE_CHECKING:
    from collections.abc import Sequence

    from chat_api.config import Settings


def not_allowed(param: str, message: str) -> InvalidRequest:
    """The 400 for a parameter this service's configuration does not allow."""
    return InvalidRequest(message, param=param, code="parameter_not_allowed")


def check_model(model: str, allowed: Sequence[str], param: str = "model") -> None:
    """The model must be one the configuration allows."""
    if model not in allowed:
        raise InvalidRequest(
            f"The model '{model}' is not available on this service; allowed: {', '.join(allowed)}.",
            param=param,
            code="model_not_allowed",
        )


def check_token_cap(name: str, value: int | None, cap: int) -> None:
    """A token limit the client names may not exceed MAX_COMPLETION_TOKENS."""
    if value is not None and value > cap:
        raise InvalidRequest(
            f"'{name}' may be at most {cap} on this service.", param=name, code="invalid_value"
        )


def check_service_tier(tier: str | None, settings: Settings) -> None:
    """`service_tier` only within ALLOWED_SERVICE_TIERS (other tiers are priced differently)."""
    if tier is not None and tier not in settings.allowed_service_tiers:
        allowed = ", ".join(settings.allowed_service_tiers) or "none"
        raise not_allowed(
            "service_tier", f"The service tier '{tier}' is not allowed here; allowed: {allowed}."
        )


def check_choices(n: int | None, settings: Settings) -> None:
    """`n` at most MAX_CHOICES: every choice is paid for."""
    if n is not None and n > settings.max_choices:
        raise not_allowed("n", f"'n' may be at most {settings.max_choices} on this service.")


def check_enabled(param: str, asked: bool, enabled: bool, setting: str) -> None:
    """A feature that costs extra is refused unless its setting turns it on."""
    if asked and not enabled:
        raise not_allowed(param, f"'{param}' is not enabled on this service ({setting}).")
