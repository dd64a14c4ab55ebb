"""Schemathesis over the app's own OpenAPI schema, with OpenAI faked on loopback.

Every operation is called in-process with generated valid and invalid requests: no 5xx, every
status, header and body conforms to the schema, so every status that occurs is documented.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.schemas import APIOperation

from chat_api.main import create_app
from tests.fake_openai import FakeOpenAI

# The schema does not depend on configuration; each test calls an app built from its own.
# (schemathesis.pytest.from_fixture would build it lazily, but fails on pytest 9.)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
# A reused Idempotency-Key with another body is answered 422: like 409, a conflict with an
# earlier request that well-formed data can meet (the generated keys repeat across examples).
schema.config.checks.positive_data_acceptance.expected_statuses = [
    *schema.config.checks.positive_data_acceptance.expected_statuses,
    "422",
]
# A generated invalid body can be large (the Responses API's `input` is a free-form list): the
# body limit refuses it with 413 before it is read, which is a rejection too.
schema.config.checks.negative_data_rejection.expected_statuses = [
    *schema.config.checks.negative_data_rejection.expected_statuses,
    "413",
]


@pytest.fixture
def app(fake_openai: FakeOpenAI) -> FastAPI:
    """The app under test, configured to call the loopback OpenAI."""
    return create_app()


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_honours_its_schema(
    case: Case[APIOperation[Any, Any, Any, Any]], app: FastAPI
) -> None:
    response = case.call(app=app)

    case.validate_response(response)
    # "default" documents the error shape for any status; each one that occurs is listed too.
    assert str(response.status_code) in case.operation.definition.raw["responses"]
