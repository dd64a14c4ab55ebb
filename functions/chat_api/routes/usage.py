"""`GET /usage`: the caller's own token budget, spent and reserved tokens this period."""

from __future__ import annotations

from fastapi import APIRouter

from chat_api.deps import BudgetDep
from chat_api.errors import error_responses
from chat_api.schemas import UsageResponse

router = APIRouter(tags=["usage"])


@router.get("/usage", responses=error_responses(401, 503))
async def usage(budget: BudgetDep) -> UsageResponse:
    """Return this caller's token budget and what it has spent in the current period."""
    return UsageResponse(**(await budget.usage())._asdict())
