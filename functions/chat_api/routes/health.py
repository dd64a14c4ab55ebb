"""`GET /health`: liveness, without calling OpenAI."""

from __future__ import annotations

from fastapi import APIRouter

from chat_api.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> HealthResponse:
    """Report that the service is up; costs no OpenAI call."""
    return HealthResponse()
