"""`Idempotency-Key` on `/v1`: a stored answer is sent back as it was first sent, marked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Response

from chat_api.routes.chat import REPLAYED_HEADER

if TYPE_CHECKING:
    from chat_api.services.idempotency import Answered


def json_answer(answered: Answered) -> Response:
    """The JSON answer, with `Idempotent-Replayed: true` when it is a stored one replayed."""
    response = Response(answered.body, media_type="application/json")
    if answered.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response
